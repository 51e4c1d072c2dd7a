"""The izray exception hierarchy.

Every error izray raises on purpose derives from :class:`IzrayError`. The CLI catches
``IzrayError`` and prints its message as one line followed by a non-zero exit, so the
message must say what is wrong *and* what to change.
"""

from __future__ import annotations

#: Exit codes of ``izray run`` / ``izray resume`` (README "Exit codes").
EXIT_OK = 0
"""Every task finished."""
EXIT_BAD_INPUT = 2
"""Bad input (config, tasks, endpoint, key, run directory): one ``izray: error:`` line."""
EXIT_INCOMPLETE = 3
"""The run ended, but some task was stopped by a cap or has no test score (failed)."""
EXIT_INTERRUPTED = 130
"""Stopped by SIGTERM or SIGINT (``ray job stop``, Ctrl-C); ``izray resume OUT`` continues."""


class IzrayError(Exception):
    """Root of all izray errors. ``str(err)`` is a one-line message for the user."""

    exit_code: int = EXIT_BAD_INPUT


class ConfigError(IzrayError):
    """The configuration (YAML, ``--set`` overrides or defaults) is invalid."""


class TaskError(IzrayError):
    """A task cannot be found, loaded or split (bad data directory, file or format)."""


class GeneratorError(IzrayError):
    """The open-source generator LLM could not be loaded or failed to generate."""


class EndpointError(IzrayError):
    """The black-box endpoint failed in a way retrying will not fix (401/403/404, unreachable)."""


class CallFailed(IzrayError):
    """One black-box call failed after its retries (a transient error that did not clear).

    Attributes:
        attempts: HTTP requests that were sent for the call.
        throttled: How many of them the server answered 429 (rate limited).
    """

    def __init__(self, message: str, attempts: int = 1, throttled: int = 0) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.throttled = throttled


class BudgetExhausted(IzrayError):
    """A configured cap (queries, calls, tokens, cost) was reached."""


class RunStateError(IzrayError):
    """A run directory is missing, not a run, or inconsistent with the request."""


class Interrupted(IzrayError):
    """The run was stopped by a signal (SIGTERM, SIGINT); its state is consistent."""

    exit_code = EXIT_INTERRUPTED
