"""Stopping a run safely on SIGTERM and SIGINT (``ray job stop``, Ctrl-C, a scheduler).

A stop is a crash done politely: the run's state is already written after every
observation, so what a stop adds is

1. stop issuing work (no new generation, no new black-box call);
2. let the calls in flight finish within a grace period: the evaluator actors journal every
   answer, so a resume gets them from the cache instead of paying again;
3. fold the journals into the ledger and the cache, write ``summary.json``;
4. remove the run's actors (detached ones included), withdraw the autoscaler request;
5. exit with :data:`izray.errors.EXIT_INTERRUPTED` (130); ``izray resume OUT`` continues.

A second signal skips the rest of the grace period (3-5 still happen). A signal while the
pools are starting aborts the start (nothing was paid yet).

``ray job stop`` sends SIGTERM and, by default, SIGKILL 3 s later
(``RAY_JOB_STOP_WAIT_TIME_S`` in the job's environment changes that): inside a Ray job the
grace period is cut to fit, leaving :data:`CLEANUP_S` for steps 3-4.

Example:
    >>> stop = StopRequest()
    >>> stop.requested, stop.immediate
    (False, False)
    >>> stop.handle(15, None); stop.requested, stop.immediate, stop.name
    (True, False, 'SIGTERM')
    >>> stop.handle(2, None); stop.immediate
    True
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Mapping
from typing import Any

from izray.errors import Interrupted

log = logging.getLogger("izray")

#: Signals that stop a run: what ``ray job stop`` (SIGTERM) and Ctrl-C (SIGINT) send.
SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Seconds a stop keeps for writing state and summary and removing actors, inside a Ray job.
CLEANUP_S = 2.0
#: Ray's own default wait between ``ray job stop``'s SIGTERM and its SIGKILL (seconds).
RAY_JOB_STOP_WAIT_S = 3.0
#: The environment variable Ray sets in a job's entrypoint (its job config).
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


class StopRequest:
    """What the signals asked for; the driver's loop polls it.

    Attributes:
        count: Signals received.
        name: The first signal's name (``SIGTERM``, ``SIGINT``), or ``None``.
        raising: While true (the pools are starting), a signal raises
            :class:`~izray.errors.Interrupted` at once instead of being polled.
    """

    def __init__(self) -> None:
        self.count = 0
        self.name: str | None = None
        self.raising = False
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.count > 0

    @property
    def immediate(self) -> bool:
        """A second signal: skip what is left of the grace period."""
        return self.count > 1

    def handle(self, signum: int, frame: Any) -> None:
        """The signal handler (also callable directly, e.g. in tests)."""
        self.count += 1
        if self.count == 1:
            self.name = signal.Signals(signum).name
        if self.raising:
            raise Interrupted(f"stopped by {signal.Signals(signum).name} while starting; "
                              "nothing was paid for yet")
        if self.count == 1:
            log.warning("%s received: stopping. In-flight calls finish (grace period), then "
                        "state and summary are written; a second signal skips the wait",
                        self.name)
        elif self.count == 2:
            log.warning("%s received again: stopping now", signal.Signals(signum).name)

    def install(self) -> None:
        """Install :meth:`handle` for :data:`SIGNALS` (main thread only; idempotent, and
        called again after ``ray.init``, which installs its own SIGTERM handler)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            previous = signal.signal(sig, self.handle)
            if previous is not self.handle:
                self._previous.setdefault(sig, previous)

    def restore(self) -> None:
        """Put back the handlers that were there before the first :meth:`install`."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()


def grace_seconds(configured: float, environ: Mapping[str, str] | None = None) -> float:
    """The grace period for in-flight calls: ``configured`` (``ray.stop_grace_s``), cut to
    what ``ray job stop`` leaves before its SIGKILL when running as a Ray job.

    Example:
        >>> grace_seconds(20.0, {})
        20.0
        >>> grace_seconds(20.0, {RAY_JOB_ENV: "{}"})
        1.0
        >>> grace_seconds(20.0, {RAY_JOB_ENV: "{}", "RAY_JOB_STOP_WAIT_TIME_S": "60"})
        20.0
    """
    env = os.environ if environ is None else environ
    if RAY_JOB_ENV not in env:
        return configured
    try:
        wait = float(env.get("RAY_JOB_STOP_WAIT_TIME_S", RAY_JOB_STOP_WAIT_S))
    except ValueError:
        wait = RAY_JOB_STOP_WAIT_S
    return max(0.0, min(configured, wait - CLEANUP_S))
