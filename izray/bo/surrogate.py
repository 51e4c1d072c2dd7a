"""The GP surrogate: a BoTorch ``SingleTaskGP`` on the instruction-coupled kernel.

Three kinds (``bo.surrogate``):

* ``"ic"``: the paper's instruction-coupled kernel. Its rank is ``<= n``, so its intervals
  are far too narrow away from the data (see :mod:`izray.bo.kernel`).
* ``"ic_residual"`` (default): the same kernel plus ``residual`` times the Nystrom residual
  of the latent kernel: the IC posterior mean near the data, calibrated variance away from
  it (``benchmarks/calibration.py`` measures both).
* ``"matern"``: a plain ARD Matern-5/2 GP on ``z``, ignoring the instructions.

The score kernel uses one lengthscale shared by all ``m`` dev examples rather than ARD:
the examples are exchangeable (the candidate score is their mean, a symmetric function),
and with binary-ish scores a per-example lengthscale would add ``m`` (~20) poorly
identified hyperparameters to a model fitted on a few dozen points, which overfits and
slows every fit. Its prior is BoTorch's dimension-scaled LogNormal for an ``m``-dimensional
input, i.e. the standard prior with the ARD lengthscales tied.

Fitting is warm-started from the hyperparameters of the previous fit when given, and is
capped in L-BFGS iterations. It never raises on numerical trouble: it retries with a
larger jitter and finally keeps the initial hyperparameters, logging a warning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import torch
from botorch.exceptions.errors import ModelFittingError
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import (
    get_covar_module_with_dim_scaled_prior,
    get_gaussian_likelihood_with_lognormal_prior,
)
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import GammaPrior, LogNormalPrior
from linear_operator.utils.errors import NanError, NotPSDError
from torch import Tensor

from izray import _constants as C
from izray.bo.kernel import DEFAULT_EPS, InstructionCoupledKernel
from izray.errors import IzrayError

logger = logging.getLogger(__name__)

Hyperparameters = dict[str, list[float]]
"""Raw model parameters by name (``model.named_parameters()``), flattened to lists."""

DEFAULT_FIT_MAXITER = 75
"""L-BFGS iterations per fit: warm-started fits converge in far fewer; caps cold fits."""

SURROGATES = ("ic", "ic_residual", "matern")
"""Surrogate kinds ``build_surrogate`` knows."""

DEFAULT_SURROGATE = C.BO_SURROGATE
"""Calibrated variance with the instruction-coupled mean (``benchmarks/calibration.py``)."""

DEFAULT_RESIDUAL = C.BO_RESIDUAL
"""Residual weight ``rho`` in standardized units (``benchmarks/calibration.py``)."""

RESIDUAL_GRID = (1.0, 3.0, 10.0, 30.0)
"""Residual weights ``select_residual`` chooses from (standardized units)."""

SELECT_MIN_TRAIN = 8
"""Fewest observations left to fit on when choosing the residual by a holdout."""

FALLBACK_EPS = 1e-2
"""Jitter of the retry after a failed fit: 100x the default, still small next to 1."""

_FIT_ERRORS = (ModelFittingError, NotPSDError, NanError, RuntimeError, ValueError)


def _check_inputs(train_x: Tensor, train_y: Tensor, train_s: Tensor) -> None:
    if train_x.dim() != 2 or train_s.dim() != 2 or train_y.dim() != 1:
        raise IzrayError(
            "fit_surrogate needs train_x (n x d), train_y (n) and train_s (n x m); got shapes "
            f"{tuple(train_x.shape)}, {tuple(train_y.shape)}, {tuple(train_s.shape)}."
        )
    n = train_x.shape[0]
    if n < 1 or train_y.shape[0] != n or train_s.shape[0] != n:
        raise IzrayError(
            f"fit_surrogate needs n >= 1 matching rows; got {n}, {train_y.shape[0]}, "
            f"{train_s.shape[0]}."
        )
    for name, t in (("train_x", train_x), ("train_y", train_y), ("train_s", train_s)):
        if not bool(torch.isfinite(t).all()):
            raise IzrayError(f"fit_surrogate: {name} contains NaN or infinite values.")


def check_kind(kind: str, residual: float) -> None:
    """Raise ``IzrayError`` unless ``kind`` is in ``SURROGATES`` and ``residual >= 0``."""
    if kind not in SURROGATES:
        raise IzrayError(f"surrogate kind must be one of {', '.join(SURROGATES)}; got {kind!r}.")
    if not residual >= 0:
        raise IzrayError(f"surrogate residual must be >= 0, got {residual!r}.")


def build_surrogate(
    train_x: Tensor,
    train_y: Tensor,
    train_s: Tensor,
    *,
    eps: float = DEFAULT_EPS,
    kind: str = DEFAULT_SURROGATE,
    residual: float = DEFAULT_RESIDUAL,
) -> SingleTaskGP:
    """Build the (unfitted) surrogate in double precision.

    Args:
        train_x: ``n x d`` observed points in ``[0, 1]^d``.
        train_y: ``n`` observed scores.
        train_s: ``n x m`` per-example dev scores of the observed instructions.
        eps: jitter of the instruction-coupled kernel.
        kind: one of ``SURROGATES``.
        residual: Nystrom residual weight of ``"ic_residual"`` (ignored otherwise).

    Returns:
        A ``SingleTaskGP`` with a ``ScaleKernel(InstructionCoupledKernel)`` covariance
        (``"matern"``: ``ScaleKernel(Matern)``), a LogNormal-prior Gaussian likelihood and a
        ``Standardize`` outcome transform.
    """
    _check_inputs(train_x, train_y, train_s)
    check_kind(kind, residual)
    x = train_x.detach().to(torch.double)
    y = train_y.detach().to(torch.double).unsqueeze(-1)
    s = train_s.detach().to(torch.double)
    d, m = x.shape[-1], s.shape[-1]
    latent = get_covar_module_with_dim_scaled_prior(ard_num_dims=d, use_rbf_kernel=False)
    if kind == "matern":
        model = SingleTaskGP(
            x,
            y,
            likelihood=get_gaussian_likelihood_with_lognormal_prior(),
            covar_module=ScaleKernel(latent, outputscale_prior=GammaPrior(2.0, 0.15)),
            outcome_transform=Standardize(m=1),
        )
        return model.to(torch.double)
    score_prior = LogNormalPrior(loc=math.sqrt(2.0) + 0.5 * math.log(m), scale=math.sqrt(3.0))
    score = MaternKernel(
        nu=2.5,
        lengthscale_prior=score_prior,
        lengthscale_constraint=GreaterThan(2.5e-2, transform=None, initial_value=score_prior.mode),
    )
    base = InstructionCoupledKernel(x, s, latent_kernel=latent, score_kernel=score, eps=eps,
                                    residual=residual if kind == "ic_residual" else 0.0)
    covar = ScaleKernel(base, outputscale_prior=GammaPrior(2.0, 0.15))
    covar.outputscale = 1.0
    model = SingleTaskGP(
        x,
        y,
        likelihood=get_gaussian_likelihood_with_lognormal_prior(),
        covar_module=covar,
        outcome_transform=Standardize(m=1),
    )
    return model.to(torch.double)


def get_hyperparameters(model: SingleTaskGP) -> Hyperparameters:
    """Return the model's raw parameters as a JSON-serialisable dict of flat lists."""
    return {
        name: [float(v) for v in p.detach().reshape(-1).tolist()]
        for name, p in model.named_parameters()
    }


def set_hyperparameters(model: SingleTaskGP, hyperparameters: Mapping[str, list[float]]) -> int:
    """Load raw parameters by name where the size matches; return how many were loaded."""
    loaded = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            values = hyperparameters.get(name)
            if values is None or len(values) != p.numel():
                continue
            t = torch.tensor(values, dtype=p.dtype, device=p.device).reshape(p.shape)
            if bool(torch.isfinite(t).all()):
                p.copy_(t)
                loaded += 1
    return loaded


def _fit(model: SingleTaskGP, *, seed: int, maxiter: int, max_attempts: int) -> None:
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        fit_gpytorch_mll(
            mll,
            optimizer_kwargs={"options": {"maxiter": maxiter}},
            max_attempts=max_attempts,
        )
    params = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    if not bool(torch.isfinite(params).all()):
        raise ModelFittingError("fit produced non-finite hyperparameters")


def fit_surrogate(
    train_x: Tensor,
    train_y: Tensor,
    train_s: Tensor,
    *,
    seed: int,
    hyperparameters: Mapping[str, list[float]] | None = None,
    maxiter: int = DEFAULT_FIT_MAXITER,
    kind: str = DEFAULT_SURROGATE,
    residual: float = DEFAULT_RESIDUAL,
) -> SingleTaskGP:
    """Fit the surrogate by maximising the marginal likelihood (``fit_gpytorch_mll``).

    Args:
        train_x: ``n x d`` observed points in ``[0, 1]^d``.
        train_y: ``n`` observed scores (may be constant).
        train_s: ``n x m`` per-example dev scores (rows may repeat).
        seed: seed of the fit's random retries (the global RNG state is left untouched).
        hyperparameters: warm start, e.g. ``get_hyperparameters`` of the previous fit.
        maxiter: L-BFGS iteration cap of each fit attempt.
        kind: one of ``SURROGATES``.
        residual: Nystrom residual weight of ``"ic_residual"``.

    Returns:
        The fitted model in eval mode, double precision. On numerical failure the fit is
        retried with jitter ``FALLBACK_EPS`` and then left at its initial hyperparameters
        (a warning is logged each time); it does not raise.
    """
    build = {"kind": kind, "residual": residual}
    model = build_surrogate(train_x, train_y, train_s, **build)
    if hyperparameters:
        set_hyperparameters(model, hyperparameters)
    try:
        _fit(model, seed=seed, maxiter=maxiter, max_attempts=2)
        return model.eval()
    except _FIT_ERRORS as err:
        logger.warning("surrogate fit failed (%s); retrying with jitter %g", err, FALLBACK_EPS)
    model = build_surrogate(train_x, train_y, train_s, eps=FALLBACK_EPS, **build)
    try:
        _fit(model, seed=seed + 1, maxiter=maxiter, max_attempts=3)
        return model.eval()
    except _FIT_ERRORS as err:
        logger.warning("surrogate fit failed again (%s); using the initial hyperparameters", err)
    model = build_surrogate(train_x, train_y, train_s, eps=FALLBACK_EPS, **build)
    return model.eval()


def select_residual(
    train_x: Tensor,
    train_y: Tensor,
    train_s: Tensor,
    *,
    holdout: int,
    seed: int,
    grid: tuple[float, ...] = RESIDUAL_GRID,
    default: float = DEFAULT_RESIDUAL,
    maxiter: int = DEFAULT_FIT_MAXITER,
) -> float:
    """The residual weight whose fit best predicts the latest observations.

    Each ``rho`` in ``grid`` is fitted on all but the last ``holdout`` observations (the most
    recently scored batch) and scored by the Gaussian log predictive density of those
    ``holdout`` scores, observation noise included: the weight that would have been best
    calibrated on the newest evidence.

    Args:
        train_x: ``n x d`` observed points, in the order they were scored.
        train_y: ``n`` scores.
        train_s: ``n x m`` per-example scores.
        holdout: how many of the latest observations are predicted.
        seed: fit seed.
        grid: candidate weights.
        default: returned when fewer than ``SELECT_MIN_TRAIN + holdout`` observations exist.
        maxiter: L-BFGS iterations per fit.

    Returns:
        The chosen ``rho`` (ties go to the smaller).
    """
    n = train_y.shape[0]
    if holdout < 1 or n - holdout < SELECT_MIN_TRAIN:
        return default
    x, y, s = train_x[:-holdout], train_y[:-holdout], train_s[:-holdout]
    hx, hy = train_x[-holdout:].to(torch.double), train_y[-holdout:].to(torch.double)
    best, best_lpd = default, -math.inf
    for rho in sorted(grid):
        model = fit_surrogate(x, y, s, seed=seed, kind="ic_residual", residual=rho,
                              maxiter=maxiter)
        with torch.no_grad():
            post = model.posterior(hx, observation_noise=True)
            mu = post.mean.reshape(-1)
            sd = post.variance.reshape(-1).clamp_min(1e-12).sqrt()
            lpd = float(torch.distributions.Normal(mu, sd).log_prob(hy).sum())
        if lpd > best_lpd + 1e-9:
            best, best_lpd = rho, lpd
    return best
