"""Tests of izray.bo.surrogate and izray.bo.proposal (small settings for speed)."""

from __future__ import annotations

import logging

import pytest
import torch

import izray.bo.proposal as proposal_module
import izray.bo.surrogate as surrogate_module
from izray.bo.proposal import ProposalSettings, deduplicate, propose, propose_detailed
from izray.bo.surrogate import fit_surrogate, get_hyperparameters, set_hyperparameters
from izray.errors import ConfigError, IzrayError

D, M = 4, 6
FAST = ProposalSettings(num_restarts=2, raw_samples=32, maxiter=20, fit_maxiter=30, mc_samples=32)


def _problem(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Observations whose per-example scores depend on x (instruction-like, binary)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, D, generator=g, dtype=torch.double)
    thresholds = torch.linspace(0.1, 0.9, M, dtype=torch.double)
    s = (x[:, :1] > thresholds).double()  # many identical rows
    return x, s.mean(-1), s


def _min_dist(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.cdist(a, b).min())


def test_points_in_bounds_distinct_and_new() -> None:
    x, y, s = _problem(12)
    pending = torch.rand(3, D, generator=torch.Generator().manual_seed(9), dtype=torch.double)
    pts = propose(x, y, s, pending, 5, seed=0, settings=FAST)
    assert pts.shape == (5, D)
    assert pts.dtype == torch.double
    assert bool(((pts >= 0) & (pts <= 1)).all())
    off_diag = torch.cdist(pts, pts) + torch.eye(5) * 10
    assert float(off_diag.min()) >= FAST.min_distance
    assert _min_dist(pts, x) >= FAST.min_distance
    assert _min_dist(pts, pending) >= FAST.min_distance


def test_deterministic_for_a_seed_and_leaves_global_rng_alone() -> None:
    x, y, s = _problem(10)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = propose(x, y, s, None, 3, seed=7, settings=FAST)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = propose(x, y, s, None, 3, seed=7, settings=FAST)
    c = propose(x, y, s, None, 3, seed=8, settings=FAST)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_pending_points_change_the_proposal() -> None:
    x, y, s = _problem(10)
    alone = propose(x, y, s, None, 2, seed=1, settings=FAST)
    with_pending = propose(x, y, s, alone, 2, seed=1, settings=FAST)
    assert not torch.allclose(alone, with_pending)
    assert _min_dist(with_pending, alone) >= FAST.min_distance


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_constant_scores_do_not_crash(value: float) -> None:
    x = torch.rand(6, D, generator=torch.Generator().manual_seed(2), dtype=torch.double)
    s = torch.full((6, M), value, dtype=torch.double)  # every z decoded to the same instruction
    y = s.mean(-1)
    pts = propose(x, y, s, x[:2] * 0.5, 4, seed=0, settings=FAST)
    assert pts.shape == (4, D)
    assert bool(torch.isfinite(pts).all())
    assert _min_dist(pts, x) >= FAST.min_distance


def test_duplicate_points_and_single_observation_do_not_crash() -> None:
    x, y, s = _problem(5)
    x_dup = torch.cat([x, x[:2]])  # the same z observed twice
    pts = propose(
        x_dup, torch.cat([y, y[:2]]), torch.cat([s, s[:2]]), None, 3, seed=0, settings=FAST
    )
    assert pts.shape == (3, D)
    pts = propose(x[:1], y[:1], s[:1], None, 2, seed=0, settings=FAST)
    assert pts.shape == (2, D)


def test_warm_start_round_trip() -> None:
    x, y, s = _problem(15)
    out = propose_detailed(x, y, s, None, 2, seed=0, settings=FAST)
    hp = out.hyperparameters
    assert set(hp) >= {
        "covar_module.raw_outputscale",
        "covar_module.base_kernel.latent_kernel.raw_lengthscale",
        "covar_module.base_kernel.score_kernel.raw_lengthscale",
        "likelihood.noise_covar.raw_noise",
    }
    assert len(hp["covar_module.base_kernel.latent_kernel.raw_lengthscale"]) == D
    assert len(hp["covar_module.base_kernel.score_kernel.raw_lengthscale"]) == 1
    model = surrogate_module.build_surrogate(x, y, s)
    assert set_hyperparameters(model, hp) == len(hp)
    assert get_hyperparameters(model) == hp
    warm = propose_detailed(x, y, s, None, 2, seed=0, settings=FAST, hyperparameters=hp)
    assert warm.points.shape == (2, D)


def test_fit_failure_falls_back_with_a_warning(monkeypatch, caplog) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("simulated numerical failure")

    monkeypatch.setattr(surrogate_module, "fit_gpytorch_mll", boom)
    x, y, s = _problem(8)
    with caplog.at_level(logging.WARNING, logger="izray.bo.surrogate"):
        model = fit_surrogate(x, y, s, seed=0)
        pts = propose(x, y, s, None, 2, seed=0, settings=FAST)
    assert not model.training
    assert pts.shape == (2, D)
    assert any("fit failed" in r.getMessage() for r in caplog.records)


def test_acquisition_failure_falls_back_to_sobol(monkeypatch, caplog) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("simulated numerical failure")

    monkeypatch.setattr(proposal_module, "optimize_acqf", boom)
    x, y, s = _problem(8)
    with caplog.at_level(logging.WARNING, logger="izray.bo.proposal"):
        pts = propose(x, y, s, None, 3, seed=0, settings=FAST)
    assert pts.shape == (3, D) and bool(((pts >= 0) & (pts <= 1)).all())
    assert any("acquisition optimisation failed" in r.getMessage() for r in caplog.records)


def test_deduplicate_replaces_near_duplicates_and_logs(monkeypatch, caplog) -> None:
    existing = torch.rand(4, D, dtype=torch.double)
    points = torch.stack(
        [
            existing[0],
            existing[1] + 1e-9,
            torch.full((D,), 0.5).double(),
            torch.full((D,), 0.5).double(),
        ]
    )
    out, replaced = deduplicate(points, existing, min_distance=1e-4, seed=0)
    assert replaced == 3
    torch.testing.assert_close(out[2], points[2])
    assert _min_dist(out, existing) >= 1e-4
    assert float((torch.cdist(out, out) + torch.eye(4)).min()) >= 1e-4
    again, _ = deduplicate(points, existing, min_distance=1e-4, seed=0)
    assert torch.equal(out, again)
    # An acquisition optimizer that proposes observed/pending points gets corrected.
    x, y, s = _problem(6)
    pending = x[:1] * 0.5
    duplicates = torch.stack([x[0], x[0], pending[0]])
    monkeypatch.setattr(
        proposal_module, "optimize_acqf", lambda *a, **k: (duplicates.clone(), torch.zeros(()))
    )
    with caplog.at_level(logging.INFO, logger="izray.bo.proposal"):
        result = propose_detailed(x, y, s, pending, 3, seed=0, settings=FAST)
    assert result.n_replaced == 3
    assert _min_dist(result.points, torch.cat([x, pending])) >= FAST.min_distance
    assert any("near-duplicate" in r.getMessage() for r in caplog.records)


def test_deduplicate_takes_the_farthest_point_when_none_is_far_enough(caplog) -> None:
    existing = torch.rand(50, D, generator=torch.Generator().manual_seed(0), dtype=torch.double)
    with caplog.at_level(logging.WARNING, logger="izray.bo.proposal"):
        out, replaced = deduplicate(existing[:1], existing, min_distance=5.0, seed=0)
    assert replaced == 1 and out.shape == (1, D)
    assert any("farthest" in r.getMessage() for r in caplog.records)


def test_settings_validation_and_round_trip() -> None:
    assert ProposalSettings.from_dict(FAST.to_dict()) == FAST
    with pytest.raises(ConfigError):
        ProposalSettings(num_restarts=0)
    with pytest.raises(ConfigError):
        ProposalSettings(num_restarts=8, raw_samples=4)
    with pytest.raises(ConfigError):
        ProposalSettings.from_dict({"bogus": 1})


def test_surrogate_kinds_and_their_uncertainty_away_from_the_data() -> None:
    """The paper's kernel is near-certain far from the data (rank <= n); the residual and the
    plain Matern GP are not. All three interpolate the observed scores."""
    x, y, s = _problem(20, seed=3)
    far = torch.rand(64, D, generator=torch.Generator().manual_seed(4), dtype=torch.double)
    sd = {}
    for kind in surrogate_module.SURROGATES:
        model = fit_surrogate(x, y, s, seed=0, kind=kind, residual=3.0)
        with torch.no_grad():
            post = model.posterior(far)
            fitted = model.posterior(x).mean.squeeze(-1)
        sd[kind] = float(post.variance.sqrt().median()) / float(y.std())
        assert float((fitted - y).abs().mean()) < 0.1, kind
    assert sd["ic"] < 0.2 and sd["ic_residual"] > 2 * sd["ic"] and sd["matern"] > 2 * sd["ic"]
    with pytest.raises(IzrayError, match="surrogate kind"):
        fit_surrogate(x, y, s, seed=0, kind="rbf")


def test_incumbent_batches_perturb_the_top_points() -> None:
    x, y, _s = _problem(30, seed=5)
    torch.manual_seed(0)
    batches = proposal_module.incumbent_batches(x, y, q=3, count=50)
    assert batches.shape == (50, 3, D)
    assert float(batches.min()) >= 0.0 and float(batches.max()) <= 1.0
    top = x[torch.argsort(y, descending=True)[:proposal_module.INCUMBENT_TOP]]
    rand = torch.rand(150, D, generator=torch.Generator().manual_seed(1), dtype=torch.double)
    near = torch.cdist(batches.reshape(-1, D), top).min(-1).values.median()
    assert float(near) < 0.5 * float(torch.cdist(rand, top).min(-1).values.median())


@pytest.mark.parametrize("incumbents", [0, 16])
def test_proposal_with_incumbent_starts_is_valid_and_deterministic(incumbents: int) -> None:
    x, y, s = _problem(15, seed=6)
    settings = ProposalSettings(num_restarts=2, raw_samples=32, maxiter=20, fit_maxiter=30,
                                mc_samples=32, incumbent_samples=incumbents)
    a = propose(x, y, s, None, 3, seed=2, settings=settings)
    b = propose(x, y, s, None, 3, seed=2, settings=settings)
    assert a.shape == (3, D) and torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1 and _min_dist(a, x) > 0


def test_settings_validate_surrogate_fields() -> None:
    with pytest.raises(ConfigError, match="surrogate kind"):
        ProposalSettings(surrogate="rbf")
    with pytest.raises(ConfigError, match="residual"):
        ProposalSettings(residual=-1.0)
    with pytest.raises(ConfigError, match="incumbent_samples"):
        ProposalSettings(incumbent_samples=-2)
    old = {k: v for k, v in FAST.to_dict().items()
           if k not in ("surrogate", "residual", "incumbent_samples")}
    assert ProposalSettings.from_dict(old).surrogate == "ic_residual"  # states of older runs
