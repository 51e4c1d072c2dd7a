"""Tests of izray.evaluation.client: the real ``openai`` SDK against the simulator on loopback.

Backoff never really sleeps: the client's ``sleep`` is a recorder (:class:`Sleeps`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
from collections.abc import Iterator

import pytest
from aiohttp import web

from izray import _constants as C
from izray.errors import CallFailed, EndpointError
from izray.evaluation.client import BlackBoxClient, CallResult, is_retryable
from izray.evaluation.ratelimit import DECREASE, RECOVERY_STEP, RateLimiter
from izray.testing.simulator import (
    RunningSimulator,
    SimConfig,
    SimStats,
    count_tokens,
    start_in_thread,
)

PROMPT = "Instruction: Write the plural of the word.\n\nInput: cat\nOutput:"
KEY = "sk-izray-test-SECRET-5f3a9c1e7b"


class Sleeps:
    """An injected ``sleep`` that records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class MaxRng(random.Random):
    """Jitter that always picks the top of its range, to read the backoff caps off."""

    def uniform(self, a: float, b: float) -> float:
        return b


def complete(client: BlackBoxClient, prompt: str = PROMPT) -> CallResult:
    """One call on a fresh event loop; the client is closed on the same loop."""

    async def go() -> CallResult:
        try:
            return await client.complete(prompt)
        finally:
            await client.close()

    return asyncio.run(go())


def check(client: BlackBoxClient) -> None:
    async def go() -> None:
        try:
            await client.check()
        finally:
            await client.close()

    asyncio.run(go())


def client_for(sim: RunningSimulator, **kwargs) -> tuple[BlackBoxClient, Sleeps]:
    sleeps = Sleeps()
    kwargs.setdefault("model", "sim-model")
    return BlackBoxClient(sim.base_url, kwargs.pop("model"), sleep=sleeps, **kwargs), sleeps


@pytest.fixture(scope="module")
def healthy() -> Iterator[RunningSimulator]:
    """A fault-free simulator shared by the success tests (they look at stats deltas)."""
    sim = start_in_thread(SimConfig(noise=0.0))
    yield sim
    sim.stop()


@pytest.fixture()
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------- success


@pytest.mark.parametrize(("api", "expected"), [("chat", "cats"), ("completions", " cats")])
def test_success_returns_text_usage_and_one_attempt(healthy, api: str, expected: str) -> None:
    before = (healthy.stats.requests, healthy.stats.prompt_tokens, healthy.stats.completion_tokens)
    client, sleeps = client_for(healthy, api=api)
    r = complete(client)
    assert r.text == expected
    assert r.attempts == 1
    assert sleeps.waits == []
    assert healthy.stats.requests - before[0] == 1
    # Usage is the server's, not izray's estimate.
    assert r.prompt_tokens == count_tokens(PROMPT) == healthy.stats.prompt_tokens - before[1]
    assert r.completion_tokens == healthy.stats.completion_tokens - before[2]
    assert r.completion_tokens >= 1


def test_check_passes_for_a_served_model_and_sends_no_completion(healthy) -> None:
    before = healthy.stats.requests
    client, _ = client_for(healthy)
    check(client)
    assert healthy.stats.requests == before


# --------------------------------------------------------------------------- 429 / 5xx


def test_429_retry_after_is_honoured(simulator) -> None:
    sim = simulator(fail_429=0.5, retry_after_s=2.5, noise=0.0, seed=3)
    sleeps = Sleeps()
    results = []
    for _ in range(6):
        client = BlackBoxClient(sim.base_url, "sim-model", sleep=sleeps, max_attempts=20)
        results.append(complete(client))
    assert all(r.text == "cats" for r in results)
    assert sim.stats.injected_429 >= 1  # some calls really were refused and retried
    assert sum(r.attempts for r in results) == sim.stats.requests
    assert sum(r.attempts - 1 for r in results) == sim.stats.injected_429
    assert len(sleeps.waits) == sim.stats.injected_429
    # Retry-After, plus at most 0.1 s of jitter so callers told the same moment spread out.
    assert all(2.5 <= w <= 2.6 for w in sleeps.waits)


def test_429_that_never_clears_fails_after_max_attempts(simulator) -> None:
    sim = simulator(fail_429=1.0, retry_after_s=4)
    client, sleeps = client_for(sim, max_attempts=3)
    with pytest.raises(CallFailed, match="429") as exc:
        complete(client)
    assert exc.value.attempts == 3 == sim.stats.requests == sim.stats.injected_429
    assert len(sleeps.waits) == 2
    assert all(4.0 <= w <= 4.1 for w in sleeps.waits)


def test_retry_after_is_capped(simulator, monkeypatch) -> None:
    monkeypatch.setattr(C, "RETRY_AFTER_MAX_S", 3.0)
    sim = simulator(fail_429=1.0, retry_after_s=500)
    client, sleeps = client_for(sim, max_attempts=2)
    with pytest.raises(CallFailed):
        complete(client)
    assert len(sleeps.waits) == 1
    assert 3.0 <= sleeps.waits[0] <= 3.1


@pytest.mark.parametrize("max_attempts", [1, 4, 7])
def test_500s_fail_after_exactly_max_attempts_requests(simulator, max_attempts: int) -> None:
    sim = simulator(fail_500=1.0)
    client, sleeps = client_for(sim, max_attempts=max_attempts)
    with pytest.raises(CallFailed, match="500") as exc:
        complete(client)
    assert exc.value.attempts == max_attempts
    assert sim.stats.requests == max_attempts == sim.stats.injected_500
    assert len(sleeps.waits) == max_attempts - 1


def test_backoff_without_retry_after_is_exponential_and_capped(simulator, monkeypatch) -> None:
    monkeypatch.setattr(C, "BACKOFF_BASE_S", 0.5)
    monkeypatch.setattr(C, "BACKOFF_MAX_S", 5.0)
    sim = simulator(fail_500=1.0)
    # The top of each jitter range: 0.5 * 2^(k-1), capped at 5.
    client, sleeps = client_for(sim, max_attempts=7, rng=MaxRng())
    with pytest.raises(CallFailed):
        complete(client)
    assert sleeps.waits == pytest.approx([0.5, 1.0, 2.0, 4.0, 5.0, 5.0])


def test_backoff_jitter_is_full_and_bounded_by_the_cap(simulator, monkeypatch) -> None:
    monkeypatch.setattr(C, "BACKOFF_BASE_S", 1.0)
    monkeypatch.setattr(C, "BACKOFF_MAX_S", 8.0)
    sim = simulator(fail_500=1.0)
    waits: list[list[float]] = []
    for seed in range(12):
        client, sleeps = client_for(sim, max_attempts=6, rng=random.Random(seed))
        with pytest.raises(CallFailed):
            complete(client)
        waits.append(sleeps.waits)
    caps = [1.0, 2.0, 4.0, 8.0, 8.0]
    for ws in waits:
        assert len(ws) == 5
        assert all(0.0 <= w <= cap for w, cap in zip(ws, caps, strict=True))
    # Jittered: calls failing in lockstep do not retry in lockstep.
    for k in range(5):
        column = [ws[k] for ws in waits]
        assert len(set(column)) == len(column)
        assert min(column) < 0.5 * caps[k] < max(column)
    assert sim.stats.requests == 12 * 6


def test_transient_500s_then_success(simulator) -> None:
    sim = simulator(fail_500=0.5, noise=0.0, seed=1)
    results = []
    sleeps = Sleeps()
    for _ in range(6):
        client = BlackBoxClient(sim.base_url, "sim-model", sleep=sleeps, max_attempts=20)
        results.append(complete(client))
    assert all(r.text == "cats" for r in results)
    assert sim.stats.injected_500 >= 1
    assert sum(r.attempts for r in results) == sim.stats.requests
    assert len(sleeps.waits) == sim.stats.injected_500


# --------------------------------------------------------------------- fatal: 401 / 404


def test_wrong_key_is_an_endpoint_error_after_one_request(simulator) -> None:
    sim = simulator(api_key=KEY)
    client, sleeps = client_for(sim, api_key="sk-wrong", key_env="MY_LLM_KEY", max_attempts=5)
    with pytest.raises(EndpointError) as exc:
        complete(client)
    assert "401" in str(exc.value)
    assert "$MY_LLM_KEY" in str(exc.value)
    assert sim.stats.requests == 1 == sim.stats.unauthorized
    assert sleeps.waits == []


def test_missing_key_names_the_default_key_variable(simulator) -> None:
    sim = simulator(api_key=KEY)
    client, _ = client_for(sim)
    with pytest.raises(EndpointError, match=r"\$OPENAI_API_KEY"):
        complete(client)
    assert sim.stats.requests == 1


def test_right_key_is_accepted(simulator) -> None:
    sim = simulator(api_key=KEY, noise=0.0)
    client, _ = client_for(sim, api_key=KEY)
    assert complete(client).text == "cats"
    assert sim.stats.unauthorized == 0


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_unknown_model_is_an_endpoint_error_after_one_request(simulator, api: str) -> None:
    sim = simulator()
    client, sleeps = client_for(sim, model="gpt-nonexistent", api=api, max_attempts=5)
    with pytest.raises(EndpointError, match="404") as exc:
        complete(client)
    assert "gpt-nonexistent" in str(exc.value)
    assert sim.stats.requests == 1 == sim.stats.not_found
    assert sleeps.waits == []


class FixedErrorServer:
    """Answers every chat completion with one fixed error (cases the simulator has not)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.stats = SimStats()
        self.status, self.code, self.message = status, code, message

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            self.stats.requests += 1
            return web.json_response(
                {"error": {"message": self.message, "type": self.code, "code": self.code}},
                status=self.status, headers={"Retry-After": "1"})

        app = web.Application()
        app.router.add_post("/v1/chat/completions", handle)
        return app


@pytest.fixture()
def error_server() -> Iterator:
    started: list[RunningSimulator] = []

    def start(status: int, code: str, message: str) -> RunningSimulator:
        server = RunningSimulator(FixedErrorServer(status, code, message))  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_insufficient_quota_429_is_fatal_at_once(error_server) -> None:
    server = error_server(429, "insufficient_quota",
                          "You exceeded your current quota, please check your plan.")
    client, sleeps = client_for(server, max_attempts=5)
    with pytest.raises(EndpointError, match="insufficient_quota"):
        complete(client)
    assert server.stats.requests == 1
    assert sleeps.waits == []


@pytest.mark.parametrize(("status", "code"), [(400, "context_length_exceeded"),
                                              (422, "invalid_request_error")])
def test_other_4xx_fail_the_call_without_retrying(error_server, status: int, code: str) -> None:
    server = error_server(status, code, "This model's maximum context length is 8192 tokens.")
    client, sleeps = client_for(server, max_attempts=5)
    with pytest.raises(CallFailed, match=f"HTTP {status}") as exc:
        complete(client)
    assert exc.value.attempts == 1 == server.stats.requests
    assert sleeps.waits == []


def test_is_retryable_table() -> None:
    class Status(Exception):
        def __init__(self, status_code: int, body: object = None) -> None:
            self.status_code = status_code
            self.body = body

    for status in (408, 409, 429, 500, 502, 503, 504, 599):
        assert is_retryable(Status(status)), status
    for status in (400, 401, 403, 404, 413, 422):
        assert not is_retryable(Status(status)), status
    assert not is_retryable(Status(429, {"code": "insufficient_quota"}))
    assert is_retryable(json.JSONDecodeError("Expecting value", '{"choices": [', 13))
    assert not is_retryable(ValueError("not an HTTP error"))


# ------------------------------------------------------------------------------- check()


def test_check_detects_an_unknown_model_without_a_completion(simulator) -> None:
    sim = simulator(models=("sim-model", "sim-large"))
    client, _ = client_for(sim, model="gpt-4o")
    with pytest.raises(EndpointError, match="not served") as exc:
        check(client)
    assert "sim-model" in str(exc.value) and "sim-large" in str(exc.value)
    assert sim.stats.requests == 0


def test_check_detects_a_wrong_key_without_a_completion(simulator) -> None:
    sim = simulator(api_key=KEY)
    client, _ = client_for(sim, api_key="sk-wrong")
    with pytest.raises(EndpointError, match=r"401.*\$OPENAI_API_KEY"):
        check(client)
    assert sim.stats.requests == 0
    good, _ = client_for(sim, api_key=KEY)
    check(good)  # the right key passes


def test_check_on_an_unreachable_endpoint(closed_port: int) -> None:
    client = BlackBoxClient(f"http://127.0.0.1:{closed_port}/v1", "m", timeout_s=2.0)
    with pytest.raises(EndpointError, match="cannot reach"):
        check(client)


def test_unreachable_endpoint_call_is_retried_then_fails(closed_port: int) -> None:
    sleeps = Sleeps()
    client = BlackBoxClient(f"http://127.0.0.1:{closed_port}/v1", "m", sleep=sleeps,
                            max_attempts=3, timeout_s=2.0)
    with pytest.raises(CallFailed, match="APIConnectionError") as exc:
        complete(client)
    assert exc.value.attempts == 3
    assert len(sleeps.waits) == 2


# ------------------------------------------------------------------ malformed / timeouts


def test_malformed_body_is_retried_until_max_attempts(simulator) -> None:
    sim = simulator(malformed=1.0)
    client, sleeps = client_for(sim, max_attempts=3)
    with pytest.raises(CallFailed) as exc:
        complete(client)
    assert exc.value.attempts == 3 == sim.stats.requests == sim.stats.injected_malformed
    assert len(sleeps.waits) == 2


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_malformed_body_then_success(simulator, api: str) -> None:
    sim = simulator(malformed=0.6, noise=0.0, seed=5)
    results = []
    for _ in range(5):
        client, _ = client_for(sim, api=api, max_attempts=30)
        results.append(complete(client))
    assert {r.text.strip() for r in results} == {"cats"}
    assert sim.stats.injected_malformed >= 1
    assert sum(r.attempts for r in results) == sim.stats.requests
    assert sum(r.attempts - 1 for r in results) == sim.stats.injected_malformed


def test_timeouts_are_retried_then_fail(simulator) -> None:
    sim = simulator(timeout=1.0, hang_s=2)
    client, sleeps = client_for(sim, timeout_s=0.3, max_attempts=3)
    with pytest.raises(CallFailed, match="Timeout") as exc:
        complete(client)
    assert exc.value.attempts == 3
    assert sim.stats.requests == 3 == sim.stats.injected_timeout
    assert len(sleeps.waits) == 2


# --------------------------------------------------------------------------- the key


def test_the_key_is_never_logged_nor_in_errors(simulator, caplog, closed_port: int) -> None:
    caplog.set_level(logging.DEBUG)
    # Successful, retried (500s, malformed bodies), rejected and unreachable calls, all
    # made with the key.
    ok = simulator(api_key=KEY, noise=0.0)
    failing = simulator(api_key=KEY, fail_500=1.0)
    malformed = simulator(api_key=KEY, malformed=1.0)
    other = simulator(api_key="sk-the-server-wants-another-key")
    unreachable = f"http://127.0.0.1:{closed_port}/v1"
    assert complete(client_for(ok, api_key=KEY)[0]).text == "cats"
    errors: list[BaseException] = []
    for sim in (failing, malformed, other):
        with pytest.raises((CallFailed, EndpointError)) as exc:
            complete(client_for(sim, api_key=KEY, max_attempts=3)[0])
        errors.append(exc.value)
    for client in (client_for(other, api_key=KEY)[0],
                   BlackBoxClient(unreachable, "m", api_key=KEY)):
        with pytest.raises(EndpointError) as exc:
            check(client)
        errors.append(exc.value)
    assert failing.stats.requests == malformed.stats.requests == 3
    assert any(r.name.startswith("izray") and "retrying" in r.getMessage()
               for r in caplog.records)
    assert any(r.name.startswith("openai") for r in caplog.records)  # DEBUG really captured
    for record in caplog.records:
        assert KEY not in record.getMessage(), record.name
        assert KEY not in repr(record.args), record.name
    for err in errors:
        assert KEY not in str(err)
        assert KEY not in repr(err)
        cause = err.__cause__ or err.__context__
        while cause is not None:
            assert KEY not in str(cause)
            cause = cause.__cause__ or cause.__context__


# ----------------------------------------------------------------------- with a limiter


class AsyncLimiter:
    """The tiny async adapter the client expects, around an in-process RateLimiter."""

    def __init__(self, lim: RateLimiter) -> None:
        self.lim = lim
        self.calls: list[str] = []

    async def reserve(self, tokens: int) -> float:
        self.calls.append("reserve")
        return self.lim.reserve(tokens)

    async def settle(self, estimated: int, actual: int) -> None:
        self.calls.append("settle")
        self.lim.settle(estimated, actual)

    async def on_throttled(self, retry_after: float | None) -> None:
        self.calls.append("throttled")
        self.lim.on_throttled(retry_after)

    async def on_success(self) -> None:
        self.calls.append("success")
        self.lim.on_success()


def test_a_429_lowers_the_limiter_factor(simulator) -> None:
    clock = [100.0]
    lim = RateLimiter(rpm=600, tpm=None, clock=lambda: clock[0])
    limiter = AsyncLimiter(lim)
    sim = simulator(fail_429=1.0, retry_after_s=7)
    client, sleeps = client_for(sim, limiter=limiter, max_attempts=2)
    with pytest.raises(CallFailed):
        complete(client)
    assert lim.stats.throttled == 2
    # Both 429s fall in one episode (the second came within the first's Retry-After): one cut.
    assert lim.stats.cuts == 1
    assert lim.factor == pytest.approx(DECREASE)
    assert limiter.calls == ["reserve", "throttled", "settle"] * 2
    # Nothing is scheduled before the server's Retry-After, and the limiter said so.
    assert lim.get_state()["not_before_in"] == pytest.approx(7.0)
    assert sleeps.waits[1] == pytest.approx(7.0)  # the second reservation waited for it
    assert lim.stats.tokens_reserved == 0  # refused calls give their tokens back

    ok = simulator(noise=0.0)
    client, _ = client_for(ok, limiter=limiter)
    r = complete(client)
    assert lim.factor == pytest.approx(DECREASE + RECOVERY_STEP)
    # Settled as the provider counts it: prompt tokens plus the max_tokens allowance.
    assert lim.stats.tokens_reserved == r.prompt_tokens + max(r.completion_tokens,
                                                              client.max_tokens)
    assert limiter.calls[-3:] == ["reserve", "settle", "success"]


# ------------------------------------------- hostile Retry-After and bad 200 answers (issue 10)


@pytest.mark.parametrize("header", ["inf", "1e400", "86400", "-5", "nan", "soon",
                                    "Wed, 21 Oct 2099 07:28:00 GMT", "Mon, 99 Foo 0000"])
def test_a_hostile_retry_after_neither_wedges_the_limiter_nor_fails_the_call(
        simulator, header: str) -> None:
    clock = [100.0]
    lim = RateLimiter(rpm=600, tpm=None, clock=lambda: clock[0])
    sim = simulator(fail_first_429=1, retry_after=header, noise=0.0)
    client, sleeps = client_for(sim, limiter=AsyncLimiter(lim), max_attempts=3)
    r = complete(client)
    assert r.text == "cats" and r.attempts == 2 == sim.stats.requests
    # The limiter holds nothing longer than the cap, and no wait was longer either.
    assert lim.get_state()["not_before_in"] <= C.RETRY_AFTER_MAX_S
    assert sleeps.waits and all(0 <= w <= C.RETRY_AFTER_MAX_S + 0.1 for w in sleeps.waits)


def test_the_limiter_clamps_a_wait_it_is_told_directly() -> None:
    lim = RateLimiter(rpm=600, tpm=None, clock=lambda: 0.0)
    lim.on_throttled(float("inf"))
    assert lim.get_state()["not_before_in"] == C.RETRY_AFTER_MAX_S
    lim.on_throttled(float("nan"))
    assert lim.get_state()["not_before_in"] == C.RETRY_AFTER_MAX_S


@pytest.mark.parametrize("kind", ["list", "int", "null", "no_choices"])
def test_a_200_without_text_content_is_retried_not_returned(simulator, kind: str) -> None:
    sim = simulator(bad_first=1, bad_kind=kind, noise=0.0)
    client, sleeps = client_for(sim, api="chat", max_attempts=3)
    r = complete(client)
    assert r.text == "cats" and isinstance(r.text, str) and r.attempts == 2
    assert sim.stats.injected_malformed == 1 and len(sleeps.waits) == 1


def test_a_200_without_text_content_every_time_fails_the_call(simulator) -> None:
    sim = simulator(bad_first=10, bad_kind="list")
    client, _ = client_for(sim, api="chat", max_attempts=3)
    with pytest.raises(CallFailed, match="content is list"):
        complete(client)
    assert sim.stats.requests == 3


# ------------------------------------------------- an endpoint that refuses every call (issue 10)


def many(client: BlackBoxClient, n: int) -> list:
    """``n`` calls one after another on one client (one loop), results or exceptions."""

    async def go() -> list:
        out = []
        try:
            for i in range(n):
                try:
                    out.append(await client.complete(f"{PROMPT} {i}"))
                except (CallFailed, EndpointError) as err:
                    out.append(err)
                    if isinstance(err, EndpointError):
                        break
        finally:
            await client.close()
        return out

    return asyncio.run(go())


def test_a_400_on_every_call_stops_after_a_few_calls(error_server) -> None:
    server = error_server(400, "invalid_request_error", "Unsupported parameter: 'stop'")
    client, _ = client_for(server, max_attempts=5)
    out = many(client, 10)
    assert [type(x) for x in out] == [CallFailed] * (C.REJECTED_CALLS_MAX - 1) + [EndpointError]
    assert server.stats.requests == C.REJECTED_CALLS_MAX
    assert "evaluator.api" in str(out[-1]) and "HTTP 400" in str(out[-1])


def test_an_html_page_on_every_call_stops_after_a_few_calls(simulator) -> None:
    sim = simulator(bad_first=100, bad_kind="html")
    client, _ = client_for(sim, api="completions", max_attempts=2)
    out = many(client, 10)
    assert isinstance(out[-1], EndpointError) and len(out) == C.REJECTED_CALLS_MAX
    assert sim.stats.requests == 2 * C.REJECTED_CALLS_MAX


def test_a_400_after_successes_only_fails_that_call(simulator, error_server) -> None:
    ok = simulator(noise=0.0)
    client, _ = client_for(ok)
    assert all(not isinstance(r, Exception) for r in many(client, 2))
    # the same client object would have counted successes: a fresh one against a 400 server
    # fails only after REJECTED_CALLS_MAX; a client that succeeded before never stops the run
    server = error_server(400, "context_length_exceeded", "too long")
    client, _ = client_for(server)
    client._succeeded = 1
    out = many(client, C.REJECTED_CALLS_MAX + 2)
    assert all(isinstance(x, CallFailed) for x in out)


class HtmlServer:
    """A web server that is no OpenAI API: every GET is a web page."""

    def __init__(self) -> None:
        self.stats = SimStats()

    def app(self) -> web.Application:
        async def page(request: web.Request) -> web.Response:
            return web.Response(text="<html><body>It works!</body></html>",
                                content_type="text/html")

        app = web.Application()
        app.router.add_get("/{tail:.*}", page)
        return app


def test_the_start_check_refuses_a_web_page_at_base_url() -> None:
    server = RunningSimulator(HtmlServer())  # type: ignore[arg-type]
    try:
        client = BlackBoxClient(server.base_url, "sim-model")

        async def go() -> None:
            try:
                await client.check()
            finally:
                await client.close()

        with pytest.raises(EndpointError, match="not an OpenAI-compatible model list"):
            asyncio.run(go())
    finally:
        server.stop()


def test_a_limiter_that_dies_after_the_answer_does_not_lose_the_paid_answer(simulator) -> None:
    class DyingLimiter(AsyncLimiter):
        async def settle(self, estimated: int, actual: int) -> None:
            if actual:  # the settle after a paid answer: the limiter actor is gone
                raise ConnectionError("limiter actor died")
            await super().settle(estimated, actual)

    sim = simulator(noise=0.0)
    lim = RateLimiter(rpm=600, tpm=None, clock=lambda: 0.0)
    client, _ = client_for(sim, limiter=DyingLimiter(lim), max_attempts=3)
    r = complete(client)
    assert r.text == "cats" and r.attempts == 1 == sim.stats.requests  # not paid again
