"""The driver's status line: what the run is doing, every ``STATUS_EVERY_S`` seconds.

One line carries the totals (tasks, queries, API calls, tokens, cost), what happened since the
previous line (the black-box call rate against the configured limit, 429 answers, failed
candidates) and an estimate of the time left from this session's query rate. The numbers are
read from the driver; this class keeps only the previous line's snapshot, so it is a plain
object the event loop calls and a unit test can drive with a fake clock.

Example::

    2026-12-03 06:10:00 INFO status: 3/30 tasks done, 412/4500 queries (450 candidates),
    5120 API calls, 61/min (limit 60/min, allowed 51), 4 x 429 and 1 failed candidate
    since the last line, 1.2M+80k tokens, $0.9120, 2 generator actor(s), ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STATUS_EVERY_S = 30.0
"""Seconds between status lines: often enough to watch, rare enough to read a night's log."""


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counters at one status line."""

    t: float
    calls: int
    throttled: int
    failed: int


def failed_candidates(runs: list[Any]) -> int:
    """Queries whose dev evaluation failed after retries (paid, not scored), over ``runs``."""
    return sum(1 for run in runs for r in run.records if r.get("query") and "error" in r)


def rate_limit(cfg_rpm: float | None, limiter: dict[str, Any]) -> str:
    """`` (limit R/min, allowed A)``: the configured rpm and, once the shared limiter has
    answered and backs off after 429s, the rate it schedules now; empty without a limit."""
    if not cfg_rpm:
        return ""
    allowed = limiter.get("allowed_rpm")
    cut = f", allowed {allowed:.0f}" if allowed is not None and allowed < cfg_rpm - 0.5 else ""
    return f" (limit {cfg_rpm:g}/min{cut})"


class StatusLine:
    """Formats the status line and remembers the previous one's counters.

    Args:
        t0: Clock time the run's loop started (the first window starts there).
        every_s: Seconds between lines.
    """

    def __init__(self, t0: float = 0.0, every_s: float = STATUS_EVERY_S) -> None:
        self.every_s = every_s
        self.last = Snapshot(t0, 0, 0, 0)
        self.loop_start = (t0, 0)  # (clock, queries) when this session's loop began
        self._last_line: float | None = None

    def due(self, now: float) -> bool:
        """Whether a line is due (the first one at once); marks it written."""
        if self._last_line is not None and now - self._last_line < self.every_s:
            return False
        self._last_line = now
        return True

    def start(self, now: float, calls: int, throttled: int, failed: int, queries: int) -> None:
        """Begin this session's window (a resume's earlier calls are not this window's)."""
        self.last = Snapshot(now, calls, throttled, failed)
        self.loop_start = (now, queries)

    def since_last(self, now: float, calls: int, throttled: int, failed: int,
                   rpm: float | None, limiter: dict[str, Any]) -> str:
        """``N/min (limit ...), T x 429 and F failed candidate(s) since the last line`` and
        moves the window on."""
        dt = max(now - self.last.t, 1e-9)
        per_min = (calls - self.last.calls) * 60.0 / dt
        d429, dfail = throttled - self.last.throttled, failed - self.last.failed
        self.last = Snapshot(now, calls, throttled, failed)
        return (f"{per_min:.0f}/min{rate_limit(rpm, limiter)}, {d429} x 429 and {dfail} failed "
                f"candidate{'' if dfail == 1 else 's'} since the last line")

    def eta(self, now: float, runs: list[Any]) -> str:
        """``, ~N min left`` from this session's query rate (empty until one has landed)."""
        t_loop, q_loop = self.loop_start
        done = sum(r.queries for r in runs) - q_loop
        if done <= 0 or now <= t_loop:
            return ""
        left = sum(max(0, r.budget - r.queries) for r in runs if not r.finished)
        return f", ~{left / (done / (now - t_loop)) / 60.0:.0f} min left"
