"""Tests of izray.evaluation.evaluator: batches over the simulator with injected faults."""

from __future__ import annotations

import asyncio

import pytest

from izray.errors import EndpointError
from izray.evaluation.client import BlackBoxClient
from izray.evaluation.evaluator import CallOutcome, Evaluator
from izray.tasks.builtin import PLURALS

WORDS = [singular for singular, _ in PLURALS[:40]]
PLURAL = dict(PLURALS)


def prompts(words: list[str]) -> list[str]:
    return [f"Instruction: Write the plural of the word.\n\nInput: {w}\nOutput:" for w in words]


async def _no_sleep(seconds: float) -> None:
    return None


def evaluate(base_url: str, batch: list[str], *, concurrency: int, **client_kw) -> list[CallOutcome]:
    async def go() -> list[CallOutcome]:
        client = BlackBoxClient(base_url, client_kw.pop("model", "sim-model"), sleep=_no_sleep,
                                **client_kw)
        try:
            return await Evaluator(client, concurrency).evaluate(batch)
        finally:
            await client.close()

    return asyncio.run(go())


def test_every_prompt_gets_an_outcome_in_order(simulator) -> None:
    sim = simulator(fail_500=0.3, latency_ms=(2.0, 10.0), noise=0.0, seed=4)
    out = evaluate(sim.base_url, prompts(WORDS), concurrency=4, max_attempts=1)
    assert len(out) == len(WORDS)
    failed = [o for o in out if not o.ok]
    assert 0 < len(failed) == sim.stats.injected_500 < len(WORDS)
    for word, o in zip(WORDS, out, strict=True):
        if o.ok:
            assert o.text == PLURAL[word]  # each answer is its own prompt's, in order
            assert o.error is None
            assert o.prompt_tokens > 0 and o.completion_tokens > 0
        else:
            assert o.text is None
            assert o.error and "500" in o.error
            assert o.prompt_tokens == 0 and o.completion_tokens == 0
        assert o.attempts == 1
    assert sim.stats.requests == len(WORDS)


@pytest.mark.parametrize("concurrency", [1, 3, 8])
def test_concurrency_bound_is_respected(simulator, concurrency: int) -> None:
    sim = simulator(latency_ms=(10.0, 20.0), fail_500=0.2, noise=0.0, seed=1)
    out = evaluate(sim.base_url, prompts(WORDS[:24]), concurrency=concurrency, max_attempts=3)
    assert len(out) == 24
    assert sim.stats.max_inflight <= concurrency
    if concurrency > 1:
        assert sim.stats.max_inflight >= 2  # calls really overlapped
    # Retries happen inside a slot: every request is some outcome's attempt.
    assert sum(o.attempts for o in out) == sim.stats.requests
    assert sim.stats.injected_500 >= 1


def test_retried_calls_succeed_and_count_their_attempts(simulator) -> None:
    sim = simulator(fail_500=0.4, noise=0.0, seed=2)
    out = evaluate(sim.base_url, prompts(WORDS[:20]), concurrency=5, max_attempts=30)
    assert all(o.ok for o in out)
    assert [o.text for o in out] == [PLURAL[w] for w in WORDS[:20]]
    assert any(o.attempts > 1 for o in out)
    assert sum(o.attempts - 1 for o in out) == sim.stats.injected_500


def test_fatal_endpoint_error_is_raised(simulator) -> None:
    sim = simulator()
    with pytest.raises(EndpointError, match="404"):
        evaluate(sim.base_url, prompts(WORDS[:5]), concurrency=2, model="no-such-model")


def test_empty_batch() -> None:
    assert evaluate("http://127.0.0.1:9/v1", [], concurrency=2) == []


def test_journal_records_every_request_and_lost_calls_count_them(simulator, tmp_path) -> None:
    """A sent line per request (attempt), so a call lost with its process counts each request
    the server saw; a journaled call is not lost."""
    from izray.evaluation.cache import cache_key
    from izray.evaluation.ledger import SENT_SUFFIX, Journal, lost_calls

    sim = simulator(fail_500=0.4, noise=0.0, seed=2)
    journal = Journal(tmp_path / "j" / "eval-a.jsonl")
    settings = {"endpoint": sim.base_url, "model": "sim-model"}

    async def go() -> list[CallOutcome]:
        client = BlackBoxClient(sim.base_url, "sim-model", sleep=_no_sleep, max_attempts=30)
        try:
            return await Evaluator(client, 5, settings, journal).evaluate(prompts(WORDS[:20]))
        finally:
            await client.close()

    out = asyncio.run(go())
    journal.close()
    assert any(o.attempts > 1 for o in out)
    sent = (tmp_path / "j" / ("eval-a.jsonl" + SENT_SUFFIX)).read_text().splitlines()
    assert len(sent) == sim.stats.requests == sum(o.attempts for o in out)
    assert lost_calls(tmp_path / "j") == []  # all journaled
    # A process that died mid-call: its sent lines, no outcome.
    dead = Journal(tmp_path / "j" / "eval-b.jsonl")
    key = cache_key(settings, "lost prompt")
    for _ in range(3):  # three requests (two retried 5xx, one in flight at the kill)
        dead.sent("call-x", "plural", key)
    dead.close()
    (lost,) = lost_calls(tmp_path / "j")
    assert (lost.id, lost.key, lost.ok, lost.attempts) == ("call-x", key, False, 3)
