"""Tests of izray.testing.landscape, the sim-hard generator and the simulator's hard mode."""

from __future__ import annotations

import itertools

import numpy as np

from izray.generation.sim_backend import SimulatedGenerator
from izray.tasks import load_task
from izray.testing import landscape
from izray.testing.simulator import follow, follow_hard


def test_every_instruction_parses_back_to_its_cells():
    for op in landscape.TASK_PHRASES:
        for idx in itertools.product(range(4), range(8), range(8), range(8)):
            assert landscape.parse(landscape.text(op, idx)) == (op, idx)
    generic = landscape.text("plural", (4, 0, 1, 2))
    assert generic.startswith("Answer the question.") and landscape.parse(generic) is None


def test_phrases_trigger_no_other_operation():
    """Modifiers must not contain the simulator's keywords, or answers would change."""
    for phrase in [p for slot in landscape.MODIFIERS for p in slot] + list(landscape.GENERIC):
        assert follow(phrase, "12, 7") == "12, 7", phrase


def test_landscape_is_hard_but_findable():
    inputs = [ex.input for ex in load_task("plural").test]
    m = landscape.measure("plural", inputs, n_points=5000)
    assert m["distinct"] > 800  # many instructions over the box
    assert m["best"] >= 0.95 and m["mean"] < 0.4
    assert 0.001 < m["near_best_share"] < 0.02  # a rare region: random search finds it sometimes


def test_per_example_scores_share_structure():
    """Instructions that differ in one modifier agree on more examples than random pairs."""
    inputs = [ex.input for ex in load_task("last_item").test]
    rng = np.random.default_rng(0)

    def vec(idx):
        return np.array([landscape.margin("last", idx, x) > 0 for x in inputs])

    near, far = [], []
    for _ in range(200):
        a = (0, *rng.integers(0, 8, 3))
        b = (0, a[1], a[2], int(rng.integers(0, 8)))
        c = (0, *rng.integers(0, 8, 3))
        near.append(np.mean(vec(a) == vec(b)))
        far.append(np.mean(vec(a) == vec(c)))
    assert np.mean(near) > np.mean(far) + 0.05


def test_hard_simulator_answers_right_only_where_the_landscape_says():
    inputs = [ex.input for ex in load_task("last_item").test]
    idx = (0, 3, 4, 5)
    instruction = landscape.text("last", idx)
    for x in inputs:
        expected = x.split(", ")[-1] if landscape.margin("last", idx, x) > 0 else x
        assert follow_hard(instruction, x) == expected
    assert follow_hard("Write the last item.", "a, b") == "b"  # other texts: keyword rules


def test_sim_hard_generator_writes_landscape_instructions():
    gen = SimulatedGenerator(landscape="hard", sleep=lambda s: None)
    text = "Input: cat, dog, owl\nOutput: owl\n\nInput: a, b\nOutput: b\n\nThe instruction was to"
    rng = np.random.default_rng(0)
    outs = [gen.instruction_for(rng.standard_normal((5, 64)), text) for _ in range(300)]
    parsed = [landscape.parse(o) for o in outs]
    assert sum(p is not None for p in parsed) > 150 and len(set(outs)) > 100
    assert all(p[0] == "last" for p in parsed if p)
    # Without a soft prompt (APE) the features come from the request's seed: same seed, same text.
    assert gen.instruction_for(None, text, seed=5) == gen.instruction_for(None, text, seed=5)
    assert len({gen.instruction_for(None, text, seed=s) for s in range(50)}) > 20
