"""izray.bo.surrogate: choosing the residual weight by the latest batch's predictive density."""

from __future__ import annotations

import torch

from izray.bo.surrogate import RESIDUAL_GRID, SELECT_MIN_TRAIN, select_residual


def history(n: int, m: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 4, generator=g, dtype=torch.double) * 0.3  # a corner of the box
    s = (torch.rand(n, m, generator=g, dtype=torch.double) < 0.3).double()
    return x, s.mean(-1), s


def test_too_few_observations_keep_the_default():
    x, y, s = history(SELECT_MIN_TRAIN + 4)
    assert select_residual(x, y, s, holdout=5, seed=0, default=3.0) == 3.0
    assert select_residual(x, y, s, holdout=0, seed=0, default=7.0) == 7.0


def test_the_choice_is_in_the_grid_and_deterministic():
    x, y, s = history(40, seed=2)
    a = select_residual(x, y, s, holdout=5, seed=3)
    assert a in RESIDUAL_GRID and a == select_residual(x, y, s, holdout=5, seed=3)
