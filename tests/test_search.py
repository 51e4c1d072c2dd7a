"""Tests of izray.search: the protocol shared by the strategies, Uniform and APE searchers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from izray.search import (
    STRATEGIES,
    OptimizerError,
    Suggestion,
    load_searcher,
    make_searcher,
    searcher_class,
)


def test_every_strategy_has_a_searcher_with_its_name():
    for name in STRATEGIES:
        assert searcher_class(name).strategy == name
    with pytest.raises(OptimizerError, match="unknown strategy 'grid'"):
        searcher_class("grid")


def test_uniform_draws_are_uniform_seeded_and_independent_of_batching():
    a = make_searcher("uniform", dim=3, budget=400, batch_size=4, seed=7)
    b = make_searcher("uniform", dim=3, budget=400, batch_size=4, seed=7)
    za = [c.z for c in a.ask(300)]
    zb = [c.z for n in (1, 2, 297) for c in b.ask(n)]
    assert za == zb
    z = np.array(za)
    assert z.shape == (300, 3) and z.min() >= -1 and z.max() <= 1
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1 / np.sqrt(3)) < 0.05
    other = make_searcher("uniform", dim=3, budget=10, batch_size=4, seed=8)
    assert other.ask(1)[0].z != za[0]
    assert a.ask(200) and a.remaining == 0 and a.ask(5) == []


def test_suggest_returns_candidates_at_once_without_remote_work():
    s = make_searcher("uniform", dim=2, budget=5, batch_size=2, seed=0)
    out = s.suggest()
    assert isinstance(out, Suggestion) and out.request is None and len(out.candidates) == 2
    assert s.n_pending == 2


def test_ape_subsets_and_seeds():
    s = make_searcher("ape", pool_size=12, n_exemplars=5, budget=50, batch_size=5, seed=3)
    cands = s.ask(50)
    assert all(c.z is None and c.temperature == 0.9 for c in cands)
    assert all(len(set(c.exemplars)) == 5 and all(0 <= i < 12 for i in c.exemplars)
               for c in cands)
    assert len({c.exemplars for c in cands}) > 40  # a different subset per candidate
    assert len({c.seed for c in cands}) == 50
    small = make_searcher("ape", pool_size=3, n_exemplars=5, budget=2, batch_size=1, seed=0)
    assert len(small.ask(1)[0].exemplars) == 3  # at most the pool
    with pytest.raises(OptimizerError, match="temperature"):
        make_searcher("ape", pool_size=3, n_exemplars=2, budget=2, batch_size=1, seed=0,
                      temperature=0.0)


@pytest.mark.parametrize("kind", ["uniform", "ape"])
def test_state_round_trip_continues_identically(kind):
    kwargs = {"dim": 4} if kind == "uniform" else {"pool_size": 9, "n_exemplars": 4}
    s = make_searcher(kind, budget=20, batch_size=3, seed=5, **kwargs)
    first = s.ask(3)
    s.tell(first[0].id, "A.", 0.5, [1.0, 0.0])
    s.tell(first[1].id, "B.", None, None)
    clone = load_searcher(json.loads(json.dumps(s.get_state())))
    assert [c.id for c in clone.pending] == [first[2].id]
    assert clone.best().instruction == "A." and clone.n_failed == 1
    assert [c.to_dict() for c in clone.ask(4)] == [c.to_dict() for c in s.ask(4)]


def test_state_of_another_strategy_or_version_is_refused():
    s = make_searcher("uniform", dim=2, budget=5, batch_size=2, seed=0)
    state = s.get_state()
    with pytest.raises(OptimizerError, match="not 'ape'"):
        searcher_class("ape").from_state(state)
    with pytest.raises(OptimizerError, match="version 1"):
        load_searcher({**state, "version": 1})
    with pytest.raises(OptimizerError, match="wrong dim"):
        load_searcher({**state, "candidates": [{"id": 0, "z": [0.1], "step": 0,
                                                "status": "pending"}]})
