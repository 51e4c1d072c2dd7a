"""Tests of izray.analysis: best-so-far curves, bootstrap intervals, paired comparisons, ranks,
the markdown table, and the plot (drawn by izray.reporting.plots)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from izray.analysis import (
    best_so_far,
    bootstrap_ci,
    markdown_table,
    mean_ranks,
    paired,
    queries_to_reach,
    summarize,
)
from izray.reporting.plots import plot_curves


def rec(dev, query):
    return {"dev_score": dev, "query": query}


def test_best_so_far_counts_paid_queries_only():
    # a duplicate (query null) adds no point; a failed query (dev null) repeats the best so
    # far; after the last query the best is carried forward to the budget
    records = [rec(0.2, 1), rec(0.2, None), rec(None, 2), rec(0.5, 3), rec(0.5, None), rec(0.4, 4)]
    curve = best_so_far(records, budget=6)
    assert curve.tolist() == [0.2, 0.2, 0.5, 0.5, 0.5, 0.5]
    assert math.isnan(best_so_far([rec(None, 1), rec(0.3, 2)], 2)[0])
    assert queries_to_reach(curve, 0.5) == 3 and queries_to_reach(curve, 0.95) is None


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(0.5, 0.1, 10), rng.normal(0.5, 0.1, 400)
    lo, hi = bootstrap_ci(small)
    lo2, hi2 = bootstrap_ci(large)
    assert lo < small.mean() < hi and lo2 < large.mean() < hi2
    assert (hi2 - lo2) < (hi - lo) / 3
    assert bootstrap_ci([0.7]) == (0.7, 0.7)


def rows_for(values):
    return [{"strategy": s, "task": t, "seed": k, "test_score": v, "dev_score": v,
             "queries": 10, "candidates": 12, "api_calls": 100}
            for s, per_task in values.items() for t, seeds in per_task.items()
            for k, v in enumerate(seeds)]


def test_paired_comparison_and_ranks():
    rows = rows_for({"instructzero": {"a": [0.8, 0.6], "b": [0.5, 0.5]},
                     "uniform": {"a": [0.7, 0.6], "b": [0.4, 0.3]}})
    p = paired(rows, "uniform", "instructzero")
    assert (p["n"], p["wins"], p["ties"], p["losses"]) == (4, 0, 1, 3)
    assert p["mean_diff"] == pytest.approx(-0.1)
    assert p["ci95_diff"][0] <= -0.1 <= p["ci95_diff"][1] < 0
    ranks = mean_ranks(rows, ["instructzero", "uniform"])
    assert ranks == {"instructzero": pytest.approx(1.125), "uniform": pytest.approx(1.875)}


def test_summarize_table_and_plot(tmp_path):
    rows = rows_for({"instructzero": {"a": [0.8, 0.6]}, "uniform": {"a": [0.7, 0.6]}})
    curves = {"instructzero": [np.linspace(0.1, 0.8, 5), np.linspace(0.1, 0.6, 5)],
              "uniform": [np.linspace(0.1, 0.5, 5), np.linspace(0.1, 0.5, 5)]}
    s = summarize(rows, curves, ["instructzero", "uniform"])
    assert s["instructzero"]["mean_test"] == pytest.approx(0.7)
    assert s["uniform"]["wins_vs_instructzero"] == 0 and s["uniform"]["losses"] == 1
    assert s["uniform"]["duplicate_share"] == pytest.approx(2 / 12)
    # instructzero's mean curve reaches uniform's final 0.5 at query 4 of 5
    assert s["instructzero"]["queries_to_reach"]["uniform"] == 4
    table = markdown_table(s)
    assert table.splitlines()[0].startswith("| strategy | mean test")
    assert "| uniform | 0.650 [" in table and "0/1/1" in table
    png = plot_curves({"a": curves}, tmp_path / "q.png", "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
