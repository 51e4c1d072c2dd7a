"""A rate limiter for requests/minute and tokens/minute, adaptive to 429s.

Requests are *scheduled*, not merely counted: every request reserves the next free slot on
two virtual clocks (GCRA, the token bucket's continuous form with no burst), one advancing
``60 / rpm`` seconds per request and one ``60 / tpm`` seconds per token. The caller sleeps
until its slot. Because reservation and accounting happen together, any number of
concurrent callers sharing one limiter (one Ray actor per endpoint and model, see
``izray.runtime``) never exceed the limits in any 60 s window, and a steady pipeline uses
them fully.

Token counts are estimated before a call (:func:`estimate_tokens`, an over-estimate) and
settled with the real usage afterwards, so over-estimates are given back.

On a 429 nothing is scheduled before the server's Retry-After, and the effective rate is cut
once per episode (multiplicative decrease; the 429s of requests already on the wire do not
cut it again). The rate at the cut, a little lowered, becomes a *ceiling*: successes restore
the rate quickly up to it (additive increase), and the ceiling itself creeps up slowly while
no 429 arrives, so a server whose real limit is below the configured one is used close to its
limit, and a raised limit is found again.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from izray import _constants as C

#: Rate factor after a 429 episode is multiplied by this (multiplicative decrease).
DECREASE = 0.85
#: Seconds after a cut during which further 429s (from requests sent before it) don't cut
#: again; a longer Retry-After extends it.
DECREASE_HOLD_S = 2.0
#: The ceiling after a cut: this fraction of the rate at which the 429 came.
CEILING_FRACTION = 0.97
#: Factor regained per successful request, up to the ceiling (additive increase).
RECOVERY_STEP = 0.01
#: The ceiling rises this much per minute without a 429 (probing for a raised limit).
PROBE_PER_MIN = 0.02
#: The factor never drops below this, so a run always progresses.
MIN_FACTOR = 0.1
#: Characters per token assumed by the pre-call estimate (English averages ~4; 3 over-estimates).
CHARS_PER_TOKEN = 3.0


def estimate_tokens(prompt: str, max_tokens: int) -> int:
    """Upper-bound estimate of a call's total tokens before it is made."""
    return int(len(prompt) / CHARS_PER_TOKEN) + 1 + max_tokens


@dataclass
class LimiterStats:
    """Counters a limiter keeps for progress and benchmarks."""

    reserved: int = 0
    tokens_reserved: int = 0
    throttled: int = 0
    cuts: int = 0
    factor: float = 1.0
    ceiling: float = 1.0


class RateLimiter:
    """Schedules calls under ``rpm`` requests/min and ``tpm`` tokens/min.

    Args:
        rpm: Requests per minute, ``None`` for no limit.
        tpm: Tokens per minute, ``None`` for no limit.
        clock: Monotonic clock in seconds (injected in tests).
        margin: Fraction of the limits left unused, so that network jitter between a
            request's slot and its arrival cannot push a server's 60 s window over the limit
            (izray uses ``evaluator.rate_margin``, 2%).

    Example:
        >>> lim = RateLimiter(rpm=60, tpm=None, clock=lambda: 0.0)
        >>> [lim.reserve(10) for _ in range(3)]
        [0.0, 1.0, 2.0]
    """

    def __init__(self, rpm: float | None, tpm: float | None,
                 clock: Callable[[], float] = time.monotonic, margin: float = 0.0) -> None:
        self.margin = margin
        self.rpm = rpm * (1.0 - margin) if rpm else rpm
        self.tpm = tpm * (1.0 - margin) if tpm else tpm
        self.clock = clock
        self._req_tat = -float("inf")  # theoretical arrival time of the next request
        self._tok_tat = -float("inf")
        self._not_before = -float("inf")
        self._hold_until = -float("inf")  # no further cut before this
        self._probe_t = clock()  # when the ceiling last moved
        self._slots: deque[float] = deque()  # slots given in the last minute (and ahead)
        self.stats = LimiterStats()

    @property
    def factor(self) -> float:
        return self.stats.factor

    def reserve(self, tokens: int) -> float:
        """Reserve a slot for one request of ``tokens`` estimated tokens.

        Returns:
            Seconds the caller must wait before sending (0 if it may send now).
        """
        now = self.clock()
        start = max(now, self._not_before)
        if self.rpm is not None:
            start = max(start, self._req_tat)
        if self.tpm is not None:
            start = max(start, self._tok_tat)
        # Both clocks advance from the slot actually given: advancing one from an earlier
        # start would bank the time the other limit made us wait, and spend it as a burst.
        if self.rpm is not None:
            self._req_tat = start + 60.0 / (self.rpm * self.stats.factor)
        if self.tpm is not None:
            # A slot for the tokens: the clock advances by their share of a minute.
            self._tok_tat = start + tokens * 60.0 / (self.tpm * self.stats.factor)
        self.stats.reserved += 1
        self.stats.tokens_reserved += tokens
        self._slots.append(start)
        self._forget(now)
        return max(0.0, start - now)

    def _forget(self, now: float) -> None:
        while self._slots and self._slots[0] <= now - 60.0:
            self._slots.popleft()

    def calls_last_minute(self) -> int:
        """Requests whose slot fell in the last 60 s (what a server's window counts)."""
        now = self.clock()
        self._forget(now)
        return sum(1 for t in self._slots if t <= now)

    def allowed(self) -> tuple[float | None, float | None]:
        """The rates scheduled now, ``(rpm, tpm)``: the limits less the margin, times the
        429 back-off factor (``None``: no such limit)."""
        f = self.stats.factor
        return (self.rpm * f if self.rpm else None, self.tpm * f if self.tpm else None)

    def settle(self, estimated: int, actual: int) -> None:
        """Correct the token clock once a call's real usage is known.

        Over-estimates are given back, but never as credit for time that has already passed
        (an idle limiter cannot bank returned tokens into a later burst).
        """
        if self.tpm is not None and actual != estimated:
            delta = (actual - estimated) * 60.0 / (self.tpm * self.stats.factor)
            if delta > 0:
                self._tok_tat += delta
            else:
                self._tok_tat = max(self._tok_tat + delta, min(self._tok_tat, self.clock()))
        self.stats.tokens_reserved += actual - estimated

    def on_throttled(self, retry_after: float | None) -> None:
        """A 429 arrived: schedule nothing before Retry-After; cut the rate once per episode.

        ``retry_after`` is clamped to ``[0, RETRY_AFTER_MAX_S]`` here too: this limiter may be
        shared by every run on the endpoint and outlive the job that reported the wait.
        """
        if retry_after is not None:
            retry_after = (min(max(0.0, float(retry_after)), C.RETRY_AFTER_MAX_S)
                           if not math.isnan(retry_after) else None)
        now = self.clock()
        self.stats.throttled += 1
        if retry_after:
            self._not_before = max(self._not_before, now + retry_after)
        if now < self._hold_until:
            return  # a request sent before the last cut: that cut already answered it
        st = self.stats
        st.cuts += 1
        st.ceiling = max(MIN_FACTOR, st.factor * CEILING_FRACTION)
        st.factor = max(MIN_FACTOR, st.factor * DECREASE)
        self._probe_t = now
        self._hold_until = now + max(DECREASE_HOLD_S, retry_after or 0.0)

    def on_success(self) -> None:
        """A call succeeded: recover the rate towards the ceiling, probe the ceiling upwards."""
        st = self.stats
        now = self.clock()
        if st.ceiling < 1.0:
            st.ceiling = min(1.0, st.ceiling + PROBE_PER_MIN * (now - self._probe_t) / 60.0)
        self._probe_t = now
        st.factor = min(st.ceiling, st.factor + RECOVERY_STEP)

    def get_state(self) -> dict:
        """Clocks as offsets from now, so a restored limiter keeps pacing (restarts)."""
        now = self.clock()
        return {"req_in": max(0.0, self._req_tat - now), "tok_in": max(0.0, self._tok_tat - now),
                "not_before_in": max(0.0, self._not_before - now), "factor": self.stats.factor,
                "ceiling": self.stats.ceiling}

    def set_state(self, state: dict) -> None:
        now = self.clock()
        self._req_tat = now + float(state.get("req_in", 0.0))
        self._tok_tat = now + float(state.get("tok_in", 0.0))
        self._not_before = now + float(state.get("not_before_in", 0.0))
        self.stats.factor = float(state.get("factor", 1.0))
        self.stats.ceiling = float(state.get("ceiling", 1.0))
        self._probe_t = now
