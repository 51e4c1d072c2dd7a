"""Tests of izray.racing: slice sizes, the Hoeffding bound, the stop rule, imputation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from izray import racing


def test_first_slice_sizes():
    assert racing.first_slice(20, 0.0) == 0  # off
    assert racing.first_slice(20, 0.25) == 5
    assert racing.first_slice(20, 0.01) == racing.MIN_SLICE
    assert racing.first_slice(2, 0.5) == 0  # nothing left to skip
    assert racing.first_slice(10, 0.99) == 0


def test_upper_bound_formula_and_monotonicity():
    ub = racing.upper_bound([1, 0, 0, 0], 20, 0.1)
    assert ub == pytest.approx((1 + 16 * min(1.0, 0.25 + math.sqrt(math.log(10) / 8))) / 20)
    assert racing.upper_bound([1, 1, 1], 10, 0.1) == 1.0  # capped at a perfect rest
    assert racing.upper_bound([0, 0], 10, 0.01) > racing.upper_bound([0, 0], 10, 0.3)
    assert racing.upper_bound([], 10, 0.1) == 1.0


def test_stop_rule():
    assert racing.stop_early([0, 0, 0, 0, 0], 20, 0.8, 0.1)
    assert not racing.stop_early([1, 1, 0, 1, 1], 20, 0.8, 0.1)
    assert not racing.stop_early([0, 0], 20, None, 0.1)  # no incumbent yet
    assert not racing.stop_early([0] * 20, 20, 0.9, 0.1)  # fully scored already


def test_the_bound_holds_at_its_confidence():
    """Random dev sets: a slice's bound is below the full mean at most delta of the time."""
    rng = np.random.default_rng(0)
    misses = 0
    for _ in range(2000):
        dev = (rng.random(20) < rng.random()).astype(float)
        misses += racing.upper_bound(dev[:5].tolist(), 20, 0.1) < dev.mean()
    assert misses / 2000 <= 0.1


def test_impute_fills_with_the_slice_mean():
    assert racing.impute([1.0, 0.0], 5) == [1.0, 0.0, 0.5, 0.5, 0.5]
