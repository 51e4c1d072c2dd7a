"""One batch proposal: fit the surrogate, then optimise qLogEI jointly over ``q`` points.

Everything lives in the unit cube ``[0, 1]^d``. A proposal is deterministic for the same
inputs, settings, warm-start hyperparameters and seed: all randomness is drawn from a
forked, seeded torch RNG (the caller's global RNG state is untouched), and it runs on
``settings.num_threads`` torch threads (default 1), so floating-point reductions do not
depend on the machine's core count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from botorch.acquisition.logei import qLogExpectedImprovement
from botorch.optim import optimize_acqf
from botorch.optim.initializers import initialize_q_batch
from botorch.sampling.normal import SobolQMCNormalSampler
from linear_operator.utils.errors import NanError, NotPSDError
from torch import Tensor
from torch.quasirandom import SobolEngine

from izray import _constants as C
from izray.bo.surrogate import (
    DEFAULT_FIT_MAXITER,
    DEFAULT_RESIDUAL,
    DEFAULT_SURROGATE,
    Hyperparameters,
    check_kind,
    fit_surrogate,
    get_hyperparameters,
)
from izray.errors import ConfigError, IzrayError

logger = logging.getLogger(__name__)

DEFAULT_NUM_RESTARTS = 4
"""L-BFGS restarts: the kernel interpolates observed points, so qLogEI has few basins."""
DEFAULT_RAW_SAMPLES = 128
"""Raw Sobol batches scored to pick the restarts: cheap, one batched posterior each."""
DEFAULT_MAXITER = 50
"""L-BFGS iterations per restart: the ascent is mostly done by then; bounds the cost."""
DEFAULT_MC_SAMPLES = 128
"""QMC samples of qLogEI: Sobol base samples keep the estimate smooth at this size."""
DEFAULT_MIN_DISTANCE = 1e-4
"""Euclidean distance in ``[0, 1]^d`` below which two points count as the same point."""
DEFAULT_INCUMBENT_SAMPLES = C.BO_INCUMBENT_SAMPLES
"""q-batches made of perturbed top observed points, scored beside the raw Sobol batches to
pick the restarts (the reference code starts its search from the top points too)."""
INCUMBENT_TOP = 5
"""Observed points (best first) the incumbent batches perturb."""
INCUMBENT_SIGMA = (0.02, 0.3)
"""Range of the per-batch Gaussian perturbation scale in the unit cube (log-uniform): from
next to an incumbent to about half a prior lengthscale away."""
DEFAULT_NUM_THREADS = 1
"""Torch threads during a proposal: its matrices are tiny, so extra threads only add
synchronisation (10x slower on a busy 2-core machine), and one thread makes the result
independent of the machine's core count."""


@dataclass(frozen=True)
class ProposalSettings:
    """Knobs of one proposal; the defaults fit ``<= 2 s`` at ``n=150, q=8`` on one core.

    Attributes:
        num_restarts: restarts of the acquisition optimizer.
        raw_samples: raw samples of the restart initialisation heuristic.
        maxiter: L-BFGS iterations per acquisition optimisation.
        fit_maxiter: L-BFGS iterations per surrogate fit attempt.
        mc_samples: quasi-Monte-Carlo samples of qLogEI.
        min_distance: points closer than this (Euclidean, unit cube) are duplicates.
        surrogate: surrogate kind (``izray.bo.surrogate.SURROGATES``).
        residual: Nystrom residual weight of the ``"ic_residual"`` surrogate.
        incumbent_samples: q-batches of perturbed top observed points scored beside the
            ``raw_samples`` Sobol batches when picking restarts (0: Sobol only).
        num_threads: torch intra-op threads while proposing (the process setting is
            restored afterwards; not thread-safe), or None to leave the process setting.
    """

    num_restarts: int = DEFAULT_NUM_RESTARTS
    raw_samples: int = DEFAULT_RAW_SAMPLES
    maxiter: int = DEFAULT_MAXITER
    fit_maxiter: int = DEFAULT_FIT_MAXITER
    mc_samples: int = DEFAULT_MC_SAMPLES
    min_distance: float = DEFAULT_MIN_DISTANCE
    surrogate: str = DEFAULT_SURROGATE
    residual: float = DEFAULT_RESIDUAL
    incumbent_samples: int = DEFAULT_INCUMBENT_SAMPLES
    num_threads: int | None = DEFAULT_NUM_THREADS

    def __post_init__(self) -> None:
        try:
            check_kind(self.surrogate, self.residual)
        except IzrayError as err:
            raise ConfigError(f"ProposalSettings: {err}") from None
        if not isinstance(self.incumbent_samples, int) or self.incumbent_samples < 0:
            raise ConfigError("ProposalSettings.incumbent_samples must be an integer >= 0, got "
                              f"{self.incumbent_samples!r}.")
        for name in ("num_restarts", "raw_samples", "maxiter", "fit_maxiter", "mc_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(
                    f"ProposalSettings.{name} must be an integer >= 1, got {value!r}."
                )
        if self.raw_samples < self.num_restarts:
            raise ConfigError(
                f"ProposalSettings.raw_samples ({self.raw_samples}) must be >= num_restarts "
                f"({self.num_restarts})."
            )
        if self.num_threads is not None and (
            not isinstance(self.num_threads, int) or self.num_threads < 1
        ):
            raise ConfigError(
                f"ProposalSettings.num_threads must be None or >= 1, got {self.num_threads!r}."
            )
        if not self.min_distance >= 0:
            raise ConfigError(
                f"ProposalSettings.min_distance must be >= 0, got {self.min_distance!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (see ``from_dict``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProposalSettings:
        """Inverse of ``to_dict``; unknown keys are an error."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"ProposalSettings: unknown keys {sorted(unknown)}.")
        return cls(**dict(data))


@dataclass(frozen=True)
class ProposalOutcome:
    """What ``propose_detailed`` returns.

    Attributes:
        points: ``q x d`` proposed points in ``[0, 1]^d``.
        hyperparameters: fitted surrogate hyperparameters (warm start for the next fit).
        fit_seconds: wall time of the surrogate fit.
        acq_seconds: wall time of the acquisition optimisation and deduplication.
        n_replaced: how many points were near-duplicates and were replaced by Sobol points.
    """

    points: Tensor
    hyperparameters: Hyperparameters
    fit_seconds: float
    acq_seconds: float
    n_replaced: int


_ACQ_ERRORS = (NotPSDError, NanError, RuntimeError, ValueError)

_REPLACEMENT_DRAWS = 1024
"""Sobol points scanned per replacement; the farthest is taken if none is far enough."""


def _min_dist(points: Tensor, others: Tensor) -> Tensor:
    """``k`` distances from each of ``k x d`` points to the nearest of ``j x d`` others."""
    if others.shape[0] == 0:
        return torch.full(points.shape[:-1], float("inf"), dtype=points.dtype)
    return torch.cdist(points, others).min(dim=-1).values


def deduplicate(
    points: Tensor, existing: Tensor, *, min_distance: float, seed: int
) -> tuple[Tensor, int]:
    """Replace points closer than ``min_distance`` to an earlier point or to ``existing``.

    Args:
        points: ``q x d`` candidate points in ``[0, 1]^d``.
        existing: ``k x d`` points to stay away from (observed and pending).
        min_distance: Euclidean distance under which two points are duplicates.
        seed: seed of the scrambled Sobol sequence the replacements are drawn from.

    Returns:
        The ``q x d`` deduplicated points and the number of points replaced.
    """
    kept = existing.clone()
    out = []
    sobol: SobolEngine | None = None
    replaced = 0
    for point in points:
        if float(_min_dist(point.unsqueeze(0), kept)[0]) < min_distance:
            if sobol is None:
                sobol = SobolEngine(points.shape[-1], scramble=True, seed=seed)
            draws = sobol.draw(_REPLACEMENT_DRAWS, dtype=points.dtype)
            dist = _min_dist(draws, kept)
            far = torch.nonzero(dist >= min_distance)
            if far.numel():
                point = draws[int(far[0, 0])]
            else:
                point = draws[int(dist.argmax())]
                logger.warning(
                    "deduplicate: no Sobol point is %g away from the others; took the "
                    "farthest (%g)",
                    min_distance,
                    float(dist.max()),
                )
            replaced += 1
        out.append(point)
        kept = torch.cat([kept, point.unsqueeze(0)])
    result = torch.stack(out) if out else points.new_zeros(0, points.shape[-1])
    return result, replaced


def incumbent_batches(train_x: Tensor, train_y: Tensor, q: int, count: int) -> Tensor:
    """``count x q x d`` q-batches of Gaussian perturbations of the top observed points.

    Each point perturbs one of the ``INCUMBENT_TOP`` best observed points (drawn at random)
    with a per-batch scale drawn log-uniformly from ``INCUMBENT_SIGMA``, clamped to the cube.
    Uses the global torch RNG (``propose_detailed`` seeds a forked one).

    Args:
        train_x: ``n x d`` observed points in ``[0, 1]^d``.
        train_y: ``n`` observed scores.
        q: points per batch.
        count: number of batches.
    """
    top = train_x[torch.argsort(train_y, descending=True)[:INCUMBENT_TOP]]
    pick = torch.randint(top.shape[0], (count, q))
    lo, hi = (torch.tensor(v, dtype=torch.double).log() for v in INCUMBENT_SIGMA)
    sigma = torch.exp(lo + (hi - lo) * torch.rand(count, 1, 1, dtype=torch.double))
    noise = sigma * torch.randn(count, q, train_x.shape[-1], dtype=torch.double)
    return (top[pick].to(torch.double) + noise).clamp(0.0, 1.0)


def initial_conditions(acqf, train_x: Tensor, train_y: Tensor, q: int, seed: int,
                       settings: ProposalSettings) -> Tensor:
    """``num_restarts x q x d`` restarts picked by BoTorch's ``initialize_q_batch`` from
    ``raw_samples`` Sobol q-batches and ``incumbent_samples`` perturbed-incumbent q-batches."""
    d = train_x.shape[-1]
    sobol = SobolEngine(d * q, scramble=True, seed=seed)
    raw = sobol.draw(settings.raw_samples, dtype=torch.double).view(-1, q, d)
    pool = torch.cat([raw, incumbent_batches(train_x, train_y, q, settings.incumbent_samples)])
    with torch.no_grad():
        values = torch.cat([acqf(chunk) for chunk in pool.split(64)])
    ics, _ = initialize_q_batch(pool, values, n=settings.num_restarts)
    return ics


@contextmanager
def _threads(num_threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if num_threads is None or num_threads == previous:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def propose_detailed(
    train_x: Tensor,
    train_y: Tensor,
    train_s: Tensor,
    pending_x: Tensor | None,
    q: int,
    *,
    seed: int,
    settings: ProposalSettings | None = None,
    hyperparameters: Mapping[str, list[float]] | None = None,
) -> ProposalOutcome:
    """Fit the surrogate and propose ``q`` new points jointly with qLogEI.

    Args:
        train_x: ``n x d`` observed points in ``[0, 1]^d``.
        train_y: ``n`` observed scores.
        train_s: ``n x m`` per-example dev scores of the observed points.
        pending_x: ``p x d`` points proposed but not yet scored (``X_pending``), or None.
        q: number of points to propose (``>= 1``).
        seed: seed of every random choice of this proposal.
        settings: optimizer knobs; defaults to ``ProposalSettings()``.
        hyperparameters: warm start for the surrogate fit.

    Returns:
        A ``ProposalOutcome`` whose ``points`` (``q x d``) lie in ``[0, 1]^d`` and are at
        least ``settings.min_distance`` from each other and from observed/pending points.
    """
    settings = settings or ProposalSettings()
    if q < 1:
        raise IzrayError(f"propose: q must be >= 1, got {q}.")
    x = train_x.detach().to(torch.double)
    d = x.shape[-1]
    pending = None
    if pending_x is not None and pending_x.shape[0] > 0:
        pending = pending_x.detach().to(torch.double)
        if pending.dim() != 2 or pending.shape[-1] != d:
            raise IzrayError(f"propose: pending_x must be p x {d}, got {tuple(pending_x.shape)}.")
    with torch.random.fork_rng(), _threads(settings.num_threads):
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        model = fit_surrogate(
            x,
            train_y,
            train_s,
            seed=seed,
            hyperparameters=hyperparameters,
            maxiter=settings.fit_maxiter,
            kind=settings.surrogate,
            residual=settings.residual,
        )
        t1 = time.perf_counter()
        acqf = qLogExpectedImprovement(
            model,
            best_f=float(train_y.max()),
            sampler=SobolQMCNormalSampler(torch.Size([settings.mc_samples]), seed=seed),
            X_pending=pending,
        )
        bounds = torch.stack([torch.zeros(d), torch.ones(d)]).to(torch.double)
        try:
            ics = None
            if settings.incumbent_samples:
                ics = initial_conditions(acqf, x, train_y.detach().to(torch.double), q, seed,
                                         settings)
            candidates, _ = optimize_acqf(
                acqf,
                bounds=bounds,
                q=q,
                num_restarts=settings.num_restarts,
                raw_samples=None if ics is not None else settings.raw_samples,
                batch_initial_conditions=ics,
                options={"maxiter": settings.maxiter, "seed": seed},
                retry_on_optimization_warning=False,
            )
            candidates = candidates.detach().clamp(0.0, 1.0)
            if not bool(torch.isfinite(candidates).all()):
                raise ValueError("non-finite candidates")
        except _ACQ_ERRORS as err:
            logger.warning("acquisition optimisation failed (%s); proposing Sobol points", err)
            sobol = SobolEngine(d, scramble=True, seed=seed)
            candidates = sobol.draw(q, dtype=torch.double)
        existing = x if pending is None else torch.cat([x, pending])
        points, n_replaced = deduplicate(
            candidates, existing, min_distance=settings.min_distance, seed=seed
        )
        t2 = time.perf_counter()
    if n_replaced:
        logger.info(
            "proposal: replaced %d of %d near-duplicate points with Sobol points", n_replaced, q
        )
    return ProposalOutcome(
        points=points,
        hyperparameters=get_hyperparameters(model),
        fit_seconds=t1 - t0,
        acq_seconds=t2 - t1,
        n_replaced=n_replaced,
    )


def propose(
    train_x: Tensor,
    train_y: Tensor,
    train_s: Tensor,
    pending_x: Tensor | None,
    q: int,
    *,
    seed: int,
    settings: ProposalSettings | None = None,
    hyperparameters: Mapping[str, list[float]] | None = None,
) -> Tensor:
    """Like ``propose_detailed`` but return only the ``q x d`` points in ``[0, 1]^d``."""
    return propose_detailed(
        train_x,
        train_y,
        train_s,
        pending_x,
        q,
        seed=seed,
        settings=settings,
        hyperparameters=hyperparameters,
    ).points
