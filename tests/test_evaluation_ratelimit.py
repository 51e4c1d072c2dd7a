"""Tests of izray.evaluation.ratelimit.RateLimiter: a fake clock for the arithmetic, and one
real-clock run against the simulator's sliding-window limit."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import time

import pytest

from izray.errors import CallFailed
from izray.evaluation.client import BlackBoxClient
from izray.evaluation.ratelimit import (
    CEILING_FRACTION,
    DECREASE,
    DECREASE_HOLD_S,
    MIN_FACTOR,
    PROBE_PER_MIN,
    RECOVERY_STEP,
    RateLimiter,
    estimate_tokens,
)
from izray.testing.simulator import RunningSimulator, SimConfig, Simulator


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def starts(lim: RateLimiter, clock: FakeClock, tokens: list[int]) -> list[float]:
    """Absolute start times the limiter gives ``tokens``-sized requests arriving now."""
    return [clock.t + lim.reserve(n) for n in tokens]


# ------------------------------------------------------------------------------- spacing


def test_rpm_spacing_is_60_over_rpm() -> None:
    clock = FakeClock(100.0)
    lim = RateLimiter(rpm=60, tpm=None, clock=clock)
    assert starts(lim, clock, [10] * 4) == pytest.approx([100.0, 101.0, 102.0, 103.0])
    lim2 = RateLimiter(rpm=600, tpm=None, clock=FakeClock())
    assert [lim2.reserve(1) for _ in range(3)] == pytest.approx([0.0, 0.1, 0.2])


def test_idle_time_is_not_banked_as_a_burst() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=60, tpm=None, clock=clock)
    lim.reserve(1)
    clock.t = 30.0  # idle for 30 s: GCRA without burst allows one now, the next 1 s later
    assert starts(lim, clock, [1, 1, 1]) == pytest.approx([30.0, 31.0, 32.0])


def test_tpm_spacing_is_proportional_to_tokens() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=None, tpm=6000, clock=clock)  # 100 tokens/s
    # Each request waits for the previous one's tokens: 100 -> 1 s, 300 -> 3 s, 50 -> 0.5 s.
    assert starts(lim, clock, [100, 300, 50, 10]) == pytest.approx([0.0, 1.0, 4.0, 4.5])
    assert lim.stats.reserved == 4
    assert lim.stats.tokens_reserved == 460


def test_both_limits_each_request_waits_for_the_stricter() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=60, tpm=600, clock=clock)  # 1 s per request, 0.1 s per token
    got = starts(lim, clock, [100, 1, 1, 1, 50, 1])
    # 100 tokens hold the token clock for 10 s; then small requests are paced by rpm (1 s),
    # not by their 0.1 s of tokens; 50 tokens then hold the next one 5 s.
    assert got == pytest.approx([0.0, 10.0, 11.0, 12.0, 13.0, 18.0])
    gaps = [b - a for a, b in itertools.pairwise(got)]
    assert min(gaps) >= 1.0 - 1e-9  # the rpm spacing holds after a tpm wait (no burst)


def test_settle_gives_back_overestimated_tokens_and_charges_underestimates() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=None, tpm=6000, clock=clock)  # 100 tokens/s
    assert lim.reserve(600) == 0.0
    lim.settle(600, 100)  # used 100 of the 600 reserved: the next slot is 1 s, not 6 s, away
    assert lim.reserve(50) == pytest.approx(1.0)
    lim.settle(50, 250)  # used 200 more than reserved: 2 s later than planned
    assert lim.reserve(1) == pytest.approx(1.0 + 2.5)
    assert lim.stats.tokens_reserved == 100 + 250 + 1


def test_settle_without_tpm_only_counts() -> None:
    lim = RateLimiter(rpm=60, tpm=None, clock=FakeClock())
    lim.reserve(500)
    lim.settle(500, 20)
    assert lim.stats.tokens_reserved == 20
    assert lim.reserve(1) == pytest.approx(1.0)  # rpm pacing untouched


def test_estimate_tokens_overestimates_prompt_and_includes_answer_cap() -> None:
    prompt = "x" * 300
    assert estimate_tokens(prompt, 48) == 100 + 1 + 48
    assert estimate_tokens(prompt, 48) > len(prompt) // 4 + 48  # the simulator's tokenizer


# ------------------------------------------------------------------------- 429 adaptation


def test_on_throttled_honours_retry_after_and_cuts_the_rate() -> None:
    clock = FakeClock(10.0)
    lim = RateLimiter(rpm=600, tpm=None, clock=clock)
    lim.on_throttled(5.0)
    assert lim.factor == pytest.approx(DECREASE)
    assert lim.stats.throttled == 1
    got = starts(lim, clock, [1, 1, 1])
    assert got[0] == pytest.approx(15.0)  # nothing scheduled before Retry-After
    spacing = 60.0 / (600 * DECREASE)
    assert got[1] - got[0] == pytest.approx(spacing)
    assert got[2] - got[1] == pytest.approx(spacing)


def test_on_throttled_without_retry_after_only_cuts_the_rate() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=60, tpm=None, clock=clock)
    lim.on_throttled(None)
    assert lim.reserve(1) == 0.0
    assert lim.reserve(1) == pytest.approx(1.0 / DECREASE)


def test_factor_never_drops_below_min_factor() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=60, tpm=60, clock=clock)
    for _ in range(100):
        lim.on_throttled(None)
        clock.t += DECREASE_HOLD_S
    assert lim.factor == pytest.approx(MIN_FACTOR)
    assert lim.stats.cuts == 100


def test_a_burst_of_429s_cuts_the_rate_once() -> None:
    """The 429s of requests already on the wire answer the same overload: one cut."""
    clock = FakeClock(100.0)
    lim = RateLimiter(rpm=600, tpm=None, clock=clock)
    for i in range(30):
        clock.t = 100.0 + i * 0.05
        lim.on_throttled(1.0)
    assert lim.factor == pytest.approx(DECREASE)
    assert lim.stats.throttled == 30 and lim.stats.cuts == 1
    clock.t = 100.0 + DECREASE_HOLD_S + 0.01  # a 429 after the hold: a new episode
    lim.on_throttled(None)
    assert lim.factor == pytest.approx(DECREASE * DECREASE)
    assert lim.stats.cuts == 2


def test_a_long_retry_after_extends_the_hold() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=600, tpm=None, clock=clock)
    lim.on_throttled(10.0)
    clock.t = 9.0
    lim.on_throttled(1.0)
    assert lim.stats.cuts == 1


def test_recovery_is_quick_to_the_ceiling_then_probes_slowly() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=60, tpm=None, clock=clock)
    lim.on_throttled(None)
    assert lim.stats.ceiling == pytest.approx(CEILING_FRACTION)
    for _ in range(10):
        lim.on_success()
    assert lim.factor == pytest.approx(DECREASE + 10 * RECOVERY_STEP)
    for _ in range(200):
        lim.on_success()  # no time passes: the factor stops at the ceiling
    assert lim.factor == pytest.approx(CEILING_FRACTION)
    clock.t += 60.0  # a minute without 429s raises the ceiling by PROBE_PER_MIN
    lim.on_success()
    assert lim.stats.ceiling == pytest.approx(CEILING_FRACTION + PROBE_PER_MIN)
    assert lim.factor == pytest.approx(min(1.0, CEILING_FRACTION + RECOVERY_STEP))
    clock.t += 600.0
    for _ in range(10):
        lim.on_success()
    assert lim.factor == 1.0 and lim.stats.ceiling == 1.0
    lim.reserve(1)
    assert lim.reserve(1) == pytest.approx(1.0)  # full rate again


def test_on_success_never_raises_the_rate_of_an_untroubled_limiter() -> None:
    lim = RateLimiter(rpm=60, tpm=None, clock=FakeClock())
    for _ in range(5):
        lim.on_success()
    assert lim.factor == 1.0


# ----------------------------------------------------------------------------- restarts


def test_get_state_set_state_preserves_pacing_across_clocks() -> None:
    clock_a = FakeClock(1000.0)
    a = RateLimiter(rpm=60, tpm=6000, clock=clock_a)
    for _ in range(5):
        a.reserve(100)  # request slots at 1000..1004; token clock at 1005
    a.on_throttled(8.0)  # nothing before 1008, factor cut
    clock_a.t = 1002.0
    state = a.get_state()
    assert state["not_before_in"] == pytest.approx(6.0)
    assert state["factor"] == pytest.approx(DECREASE)

    clock_b = FakeClock(5.0)  # a restarted process: another monotonic origin
    b = RateLimiter(rpm=60, tpm=6000, clock=clock_b)
    b.set_state(state)
    assert b.factor == pytest.approx(DECREASE)
    assert b.stats.ceiling == pytest.approx(a.stats.ceiling) == pytest.approx(CEILING_FRACTION)
    assert b.reserve(100) == pytest.approx(6.0)  # same wait as `a` would give
    assert a.reserve(100) == pytest.approx(6.0)
    fresh = RateLimiter(rpm=60, tpm=6000, clock=clock_b)
    assert fresh.reserve(100) == 0.0  # what would happen without the state


def test_get_state_of_an_idle_limiter_is_zero_offsets() -> None:
    clock = FakeClock(50.0)
    lim = RateLimiter(rpm=60, tpm=600, clock=clock)
    assert lim.get_state() == {"req_in": 0.0, "tok_in": 0.0, "not_before_in": 0.0, "factor": 1.0,
                               "ceiling": 1.0}
    lim.reserve(10)
    clock.t = 500.0
    assert lim.get_state()["req_in"] == 0.0  # past slots are not carried into the future


# ------------------------------------------------------------------------ the contract


def _max_window(times: list[float], tokens: list[int], width: float = 60.0) -> tuple[int, int]:
    """Most requests and most tokens whose start times fall in any window [t, t + width)."""
    order = sorted(range(len(times)), key=times.__getitem__)
    ts = [times[i] for i in order]
    ks = [tokens[i] for i in order]
    prefix = [0]
    for k in ks:
        prefix.append(prefix[-1] + k)
    most_n = most_tok = 0
    for i, t in enumerate(ts):  # a worst window can always be moved to start at a request
        j = bisect.bisect_left(ts, t + width - 1e-9)
        most_n = max(most_n, j - i)
        most_tok = max(most_tok, prefix[j] - prefix[i])
    return most_n, most_tok


@pytest.mark.parametrize("seed", range(8))
def test_every_60s_window_respects_rpm_and_tpm(seed: int) -> None:
    """The limiter's contract, checked on random traffic.

    Why ``<= rpm`` requests but ``<= tpm + largest`` tokens: the limiter is GCRA without a
    burst allowance (module docstring). Each request advances the request clock by
    ``60/rpm`` and the token clock by ``tokens * 60/tpm``, and a request starts only once
    both clocks have passed. So for requests i < j starting within 60 s of each other,
    the requests *before* j (i .. j-1) advanced the token clock by less than 60 s, i.e. hold
    fewer than ``tpm`` tokens. Request j itself is admitted as soon as the clock allows,
    whatever its size, so a window holds at most ``tpm`` plus one request's tokens. (Refusing
    j until its own tokens fit would deadlock any request larger than ``tpm``.) For requests
    every request costs the same ``60/rpm``, which makes that bound exact: at most ``rpm``
    starts fit in [t, t + 60).
    """
    rng = random.Random(seed)
    rpm, tpm = rng.choice([(30, 20_000), (120, 6_000), (60, 3_000), (None, 5_000), (40, None)])
    clock = FakeClock(rng.uniform(0, 1e6))
    lim = RateLimiter(rpm=rpm, tpm=tpm, clock=clock)
    times: list[float] = []
    actual: list[int] = []
    for _ in range(600):
        # Callers arrive in bursts (~75/min on average, more than the limits allow) and
        # lulls (the limiter idles), and reserve before earlier slots have come.
        u = rng.random()
        clock.t += 0.0 if u < 0.4 else rng.expovariate(3.0) if u < 0.97 else rng.expovariate(0.05)
        est = rng.randint(1, 1500)
        start = clock.t + lim.reserve(est)
        used = rng.randint(1, est) if rng.random() < 0.5 else est
        lim.settle(est, used)  # real usage known at once: the over-estimate is given back
        times.append(start)
        actual.append(used)
        if rng.random() < 0.02:
            lim.on_throttled(rng.choice([None, rng.uniform(0, 30)]))
        else:
            lim.on_success()
    most_n, most_tok = _max_window(times, actual)
    if rpm is not None:
        assert most_n <= rpm
    if tpm is not None:
        assert most_tok <= tpm + max(actual)
    # The traffic was heavy enough for a limit to bind, so the assertions above had teeth.
    assert (rpm is not None and most_n >= 0.7 * rpm) or (tpm is not None and most_tok >= 0.7 * tpm)


def test_starts_are_never_before_the_reservation_time() -> None:
    rng = random.Random(7)
    clock = FakeClock()
    lim = RateLimiter(rpm=100, tpm=10_000, clock=clock)
    for _ in range(300):
        clock.t += rng.expovariate(1.0)
        assert lim.reserve(rng.randint(1, 800)) >= 0.0


# -------------------------------------------------------------- shared, with real time

#: Time runs this much faster for the limiter and the simulator's window below: the
#: simulator's 60 s sliding window lasts 1 real second, so exceeding it is possible in a
#: short test (at real time, a 1 s run at 6000 rpm sends 100 of the 6000 allowed requests,
#: and no 429 could ever happen, limiter or not).
SCALE = 60.0


class ScaledSimulator(Simulator):
    """The simulator with its rpm/tpm window measured in scaled time (60 s = 1 s real)."""

    def _admit(self, now: float, tokens: int) -> float | None:
        wait = super()._admit(now * SCALE, tokens)
        return None if wait is None else wait / SCALE


class SharedLimiter:
    """The async adapter the client expects around one in-process RateLimiter (scaled)."""

    def __init__(self, rpm: float) -> None:
        self.lim = RateLimiter(rpm=rpm, tpm=None, clock=lambda: time.monotonic() * SCALE)

    async def reserve(self, tokens: int) -> float:
        return self.lim.reserve(tokens) / SCALE

    async def settle(self, estimated: int, actual: int) -> None:
        self.lim.settle(estimated, actual)

    async def on_throttled(self, retry_after: float | None) -> None:
        self.lim.on_throttled(None if retry_after is None else retry_after * SCALE)

    async def on_success(self) -> None:
        self.lim.on_success()


async def _burst(base_url: str, n: int, limiter: SharedLimiter | None) -> list[str | None]:
    client = BlackBoxClient(base_url, "sim-model", limiter=limiter, max_attempts=1)

    async def one(i: int) -> str | None:
        try:
            return (await client.complete(f"Instruction: plural\n\nInput: cat {i}\nOutput:")).text
        except CallFailed:
            return None

    try:
        return await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await client.close()


def test_shared_limiter_keeps_concurrent_tasks_under_the_servers_rpm() -> None:
    """Many tasks share one limiter against a server enforcing 6000 requests per real minute
    (100 per scaled minute, i.e. per real second) over a sliding window; none is refused.

    The limiter runs below the server's limit (HEADROOM): the server counts *arrivals*, and
    a request arrives later than its slot by however long the loaded machine took to wake
    its task, send it and parse it. At exactly the limit, GCRA puts request j + rpm exactly
    one window after request j, so any extra delay of j over j + rpm would put rpm + 1
    arrivals in one window. The exact arithmetic is checked with a fake clock above; this
    test checks that concurrent tasks sharing one limiter are paced, not burst, in real
    time. (Real deployments need such headroom too; 40 % keeps this test stable with both
    cores busy elsewhere.)
    """
    server_rpm, n = 100, 110  # 110 requests do not fit one window of 100
    headroom = 0.6
    # Control: the same burst without a limiter is refused, so the server's limit binds.
    control = RunningSimulator(ScaledSimulator(SimConfig(rpm=server_rpm, noise=0.0)))
    try:
        answers = asyncio.run(_burst(control.base_url, n, None))
        assert control.stats.rate_limited >= n - server_rpm
        assert answers.count(None) == control.stats.rate_limited
    finally:
        control.stop()

    sim = RunningSimulator(ScaledSimulator(SimConfig(rpm=server_rpm, noise=0.0)))
    try:
        shared = SharedLimiter(rpm=headroom * server_rpm)
        t0 = time.perf_counter()
        answers = asyncio.run(_burst(sim.base_url, n, shared))
        elapsed = time.perf_counter() - t0
        assert sim.stats.rate_limited == 0
        assert None not in answers
        assert sim.stats.ok == n
        assert shared.lim.stats.reserved == n
        # Paced, not sent at once: n slots at 60 per second span (n - 1) / 60 s, more than
        # one window, so the window really filled with paced traffic.
        assert elapsed >= (n - 1) / (headroom * server_rpm) * 0.95 > 60.0 / SCALE
        assert sim.stats.window_max_requests <= server_rpm
    finally:
        sim.stop()


def test_late_settle_does_not_bank_idle_time_into_a_burst():
    """Tokens returned after the limiter sat idle must not allow a later burst."""
    from izray.evaluation.ratelimit import RateLimiter as _RL

    now = [0.0]
    lim = _RL(rpm=None, tpm=1000, clock=lambda: now[0])
    assert lim.reserve(1000) == 0.0  # occupies the token clock until t=60
    now[0] = 120.0  # idle for a minute after that
    lim.settle(1000, 10)  # the call used far fewer tokens than reserved
    assert lim.reserve(1000) == 0.0
    assert lim.reserve(1000) == pytest.approx(60.0)  # the next full minute, not a burst


def test_margin_paces_below_the_limit():
    """With a 2% margin, 60 rpm is paced at 58.8 rpm: slots 60/58.8 s apart."""
    from izray.evaluation.ratelimit import RateLimiter as _RL

    lim = _RL(rpm=60, tpm=None, clock=lambda: 0.0, margin=0.02)
    waits = [lim.reserve(1) for _ in range(3)]
    assert waits == pytest.approx([0.0, 60 / 58.8, 120 / 58.8])
