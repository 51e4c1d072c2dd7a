"""The izray exception hierarchy.

Every error izray raises on purpose derives from :class:`IzrayError`. The CLI catches
``IzrayError`` and prints its message as one line followed by a non-zero exit, so the
message must say what is wrong *and* what to change.
"""

from __future__ import annotations


class IzrayError(Exception):
    """Root of all izray errors. ``str(err)`` is a one-line message for the user."""

    exit_code: int = 2


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
    """

    def __init__(self, message: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class BudgetExhausted(IzrayError):
    """A configured cap (queries, calls, tokens, cost) was reached."""


class RunStateError(IzrayError):
    """A run directory is missing, not a run, or inconsistent with the request."""
