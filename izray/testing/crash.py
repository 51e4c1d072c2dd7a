"""Crash-point injection: SIGKILL this process at a named point, for crash tests.

Set ``IZRAY_CRASH_AT=POINT[:N]`` in the environment of ``izray run`` (or ``resume``) and
the process that passes ``POINT`` for the ``N``-th time (default 1) kills itself with
SIGKILL, as an OOM killer or a preempted node would: no ``finally``, no flush. The points:

=========  =====================================================================
``answer``   evaluator: the HTTP answer is in memory, not yet in the journal
``journal``  evaluator: the answer was journaled (fsync'd)
``ledger``   driver: a batch of outcomes was written to ``ledger.sqlite``
``state``    driver: a task's state file was saved
``summary``  driver: the run finished, ``summary.json`` not yet written
=========  =====================================================================

With ``IZRAY_CRASH_MARK=PATH`` the kill happens once: the file is created first, and a
process that finds it does not crash (an evaluator actor restarted by Ray inherits the
same environment). The variables reach actors on a cluster through their runtime
environment (:data:`izray.runtime.actors.ACTOR_ENV`). Unset, :func:`crash_point` costs one
dictionary lookup.

Example:
    ``IZRAY_CRASH_AT=ledger:3 izray run cfg.yaml --out runs/x`` dies after the third ledger
    write; ``izray resume runs/x`` must then lose nothing and pay nothing twice.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

#: Environment variable naming the point (and pass) to crash at.
CRASH_AT = "IZRAY_CRASH_AT"
#: Environment variable naming the once-only marker file.
CRASH_MARK = "IZRAY_CRASH_MARK"
#: The named points, in the order a call passes them.
POINTS = ("answer", "journal", "ledger", "state", "summary")

_passes: Counter[str] = Counter()


def forwarded_env() -> dict[str, str]:
    """The crash variables set here, for an actor's runtime environment."""
    return {k: os.environ[k] for k in (CRASH_AT, CRASH_MARK) if os.environ.get(k)}


def crash_point(name: str) -> None:
    """SIGKILL this process if ``$IZRAY_CRASH_AT`` names ``name`` and this is pass N."""
    spec = os.environ.get(CRASH_AT)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _passes[name] += 1
    if _passes[name] != (int(nth) if nth else 1):
        return
    mark = os.environ.get(CRASH_MARK)
    if mark:
        try:
            Path(mark).touch(exist_ok=False)
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)
