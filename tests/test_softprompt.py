"""The fixed random projection z -> soft-prompt embeddings."""

from __future__ import annotations

import numpy as np

from izray.softprompt import SoftPromptProjection, stable_seed


def make(seed=1, scale=1.0, std=1.0, hidden=16):
    return SoftPromptProjection.create(dim=10, n_tokens=5, hidden=hidden, embed_std=std,
                                       scale=scale, seed=seed)


def test_shapes():
    p = make()
    assert p.matrix.shape == (10, 5 * 16)
    assert p(np.zeros(10)).shape == (5, 16)
    assert p(np.zeros((7, 10))).shape == (7, 5, 16)


def test_deterministic_per_seed_and_different_across_seeds():
    assert np.array_equal(make(1).matrix, make(1).matrix)
    assert not np.allclose(make(1).matrix, make(2).matrix)


def test_linear():
    p = make()
    z1, z2 = np.random.default_rng(0).uniform(-1, 1, (2, 10))
    np.testing.assert_allclose(p(z1 + z2), p(z1) + p(z2), rtol=1e-5, atol=1e-5)


def test_scale_matches_target_std():
    """For z uniform on the box, projected coordinates have std = scale * embed_std."""
    p = make(hidden=400, std=0.5, scale=2.0)
    z = np.random.default_rng(0).uniform(-1, 1, (400, 10))
    std = float(p(z).std())
    assert abs(std - 1.0) < 0.1


def test_save_load_roundtrip(tmp_path):
    p = make(seed=5)
    p.save(tmp_path / "proj.npz")
    q = SoftPromptProjection.load(tmp_path / "proj.npz")
    assert np.array_equal(p.matrix, q.matrix) and (q.n_tokens, q.hidden, q.seed) == (5, 16, 5)


def test_stable_seed_is_stable_and_sensitive():
    assert stable_seed(0, "task", "projection") == stable_seed(0, "task", "projection")
    assert stable_seed(0, "task") != stable_seed(1, "task")
    assert 0 <= stable_seed("x") < 2**31
