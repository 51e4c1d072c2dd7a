"""Cost and cap arithmetic (``izray.costs``), without Ray."""

from __future__ import annotations

import doctest

import pytest

import izray.costs
from izray.config import Caps, Price
from izray.costs import (
    ESTIMATE_MARGIN,
    cap_exceeded,
    cost_usd,
    per_query_estimate,
    prior_estimate,
    scaled,
)
from izray.evaluation.ledger import Usage


def test_module_examples():
    assert doctest.testmod(izray.costs).failed == 0


def test_cost_needs_a_price_for_the_model():
    prices = {"m": Price(prompt=2.0, completion=10.0)}
    usage = Usage(calls=3, prompt_tokens=1_000_000, completion_tokens=100_000)
    assert cost_usd(prices, "m", usage) == pytest.approx(3.0)
    assert cost_usd(prices, "other", usage) is None


@pytest.mark.parametrize(("caps", "spent", "queries", "need", "need_q", "blocked_by"), [
    (Caps(), Usage(10**6, 10**9, 10**9), 10**6, Usage(20, 800, 60), 1, None),
    (Caps(queries=3), Usage(), 2, Usage(20), 1, None),
    (Caps(queries=3), Usage(), 3, Usage(20), 1, "queries"),
    (Caps(queries=3), Usage(), 3, Usage(5), 0, None),  # a test evaluation adds no query
    (Caps(api_calls=60), Usage(40), 2, Usage(20), 1, None),  # exactly at the cap is fine
    (Caps(api_calls=60), Usage(41), 2, Usage(20), 1, "api_calls"),
    (Caps(prompt_tokens=1000), Usage(1, 201), 1, Usage(20, 800), 1, "prompt_tokens"),
    (Caps(completion_tokens=100), Usage(1, 0, 50), 1, Usage(20, 0, 50), 1, None),
    (Caps(completion_tokens=100), Usage(1, 0, 51), 1, Usage(20, 0, 50), 1, "completion_tokens"),
    (Caps(usd=0), Usage(), 0, Usage(1, 1), 1, "usd"),
])
def test_cap_exceeded_names_the_cap_that_would_be_crossed(caps, spent, queries, need, need_q,
                                                         blocked_by):
    def usd(u: Usage) -> float:
        return u.prompt_tokens * 1.0 + u.completion_tokens * 2.0

    got = cap_exceeded(caps, spent, queries, need, need_q, usd, "run")
    if blocked_by is None:
        assert got is None
    else:
        assert got is not None and got.startswith(f"caps.run.{blocked_by}="), got
        assert "reached" in got and "needs ~" in got


def test_usd_cap_is_ignored_without_a_price():
    assert cap_exceeded(Caps(usd=1.0), Usage(5, 10**6), 3, Usage(5, 10**6), 1,
                        lambda u: None, "task") is None


def test_usd_message_shows_money():
    msg = cap_exceeded(Caps(usd=1.0), Usage(1, 900), 1, Usage(1, 200), 1,
                       lambda u: u.prompt_tokens / 1000, "task", what="the test evaluation")
    assert msg == "caps.task.usd=1 reached (0.9000 spent, the test evaluation needs ~0.2000)"


def test_prior_estimate_bounds_answers_by_max_tokens():
    prior = prior_estimate([30, 31, 3], instruction_tokens=64, answer_tokens=48)
    assert prior.calls == 3
    assert prior.prompt_tokens == 10 + 11 + 1 + 3 * 64  # ceil(chars / 3) + instruction limit
    assert prior.completion_tokens == 3 * 48


def test_per_query_estimate_learns_from_the_largest_evaluation_seen():
    prior = Usage(20, 1000, 960)
    assert per_query_estimate(prior, None, 20) == prior
    seen = Usage(24, 1200, 80)  # retries, longer prompts than estimated, short answers
    est = per_query_estimate(prior, seen, 20)
    assert est.calls == 24
    assert est.prompt_tokens == int(1200 * ESTIMATE_MARGIN)
    assert est.completion_tokens == int(80 * ESTIMATE_MARGIN)
    small = per_query_estimate(prior, Usage(3, 100, 4), 20)  # partly answered from the cache
    assert small.calls == 20 and small.prompt_tokens == 1000  # never below the prompt estimate


def test_scaled_rounds_up():
    assert scaled(Usage(20, 5, 1), 0.25) == Usage(5, 2, 1)
    assert scaled(Usage(20, 5, 1), 3) == Usage(60, 15, 3)
