"""izray.selection: the top distinct instructions, the re-scoring's pick, and its fallbacks."""

from __future__ import annotations

import doctest

import izray.selection as select
from izray.search.base import Observation
from izray.tasks import load_task, make_splits


def obs(cid: int, instruction: str, score: float) -> Observation:
    return Observation(cid, None, cid, instruction, score, (score,))


def test_top_distinct_drops_repeats_and_breaks_ties_by_the_earliest():
    found = [obs(3, "c", 0.9), obs(0, "a", 0.5), obs(1, "b", 0.9), obs(2, "b", 0.9),
             obs(4, "a", 0.5)]
    assert [o.instruction for o in select.top_distinct(found, 5)] == ["b", "c", "a"]
    assert [o.candidate_id for o in select.top_distinct(found, 2)] == [1, 3]


def test_the_pick_is_the_best_over_dev_and_extra_and_errors_do_not_count():
    sel = select.start([obs(0, "a", 0.9), obs(1, "b", 0.8), obs(2, "c", 0.7)], n_extra=30)
    assert not select.record(sel, 2, None, n_dev=10, error="HTTP 500")
    assert not select.record(sel, 0, 0.6, n_dev=10)
    assert select.record(sel, 1, 0.7, n_dev=10)
    assert sel["done"] and sel["winner"] == "b"
    assert abs(sel["rows"][1]["combined"] - (0.8 * 10 + 0.7 * 30) / 40) < 1e-12
    assert "combined" not in sel["rows"][2] and sel["rows"][2]["error"] == "HTTP 500"


def test_ties_go_to_the_better_dev_score():
    sel = select.start([obs(0, "a", 0.9), obs(1, "b", 0.9)], n_extra=10)
    select.record(sel, 1, 0.8, n_dev=10)
    select.record(sel, 0, 0.8, n_dev=10)
    assert sel["winner"] == "a"


def test_winner_falls_back_to_the_best_dev_score():
    found = [obs(0, "a", 0.9), obs(1, "b", 0.8)]
    best = found[0]
    assert select.winner(found, best, None) is best
    assert select.winner(found, best, select.skipped("no extra examples")) is best
    every_row_failed = select.start(found, 5)
    select.record(every_row_failed, 0, None, n_dev=5, error="x")
    select.record(every_row_failed, 1, None, n_dev=5, error="x")
    assert every_row_failed["done"] and select.winner(found, best, every_row_failed) is best
    assert select.winner(found, best, {"winner": "b"}).instruction == "b"


def test_extra_examples_never_overlap_exemplars_dev_or_test():
    task = load_task("plural")
    splits = make_splits(task, 0, n_exemplars=5, n_dev=8, n_test=10)
    extra = select.extra_examples(splits, 8)
    assert 0 < len(extra) <= 8
    used = {e.input for e in splits.exemplars + splits.dev + splits.test}
    assert not used & {e.input for e in extra}


def test_module_example_runs():
    assert doctest.testmod(select).failed == 0
