"""Per-task Bayesian-optimisation state with a Tune-Searcher-style ask/tell interface.

A :class:`TaskOptimizer` issues candidates ``z`` in ``[-1, 1]^d`` and receives their
scores. The surrogate works in ``[0, 1]^d`` with ``x = (z + 1) / 2``.

Phases:

* ``"init"``: the first ``n_init`` candidates come from a seeded scrambled Sobol sequence.
  A failed initial candidate is replaced by the next Sobol point, so the initial design
  always reaches ``n_init`` observations (or exhausts the budget).
* ``"wait"``: ``n_init`` initial candidates are in flight but fewer than ``n_init`` have
  been scored. The optimizer returns no candidates rather than more Sobol points: the
  pipeline already holds ``n_init >= batch_size`` evaluations, the wait lasts one round
  of them, and every extra random point would permanently spend budget on an
  uninformed query (InstructZero budgets are ~150 queries).
* ``"model"``: at least ``n_init`` observations exist; qLogEI proposals treat every
  pending candidate as ``X_pending``.
* ``"exhausted"``: all ``budget`` candidates have been issued (some may still be
  pending; ``done`` is true once none are).

The expensive proposal is split off for remote execution: ``proposal_request`` takes a
picklable snapshot, the pure function :func:`run_proposal` computes it anywhere, and
``accept`` registers the result. ``suggest`` returns the Sobol points of the initial design at
once and the model phase's request as a :class:`~izray.search.base.Suggestion` (the searcher
protocol every strategy shares); ``ask`` does it all locally.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.quasirandom import SobolEngine

from izray.bo.proposal import ProposalSettings, propose_detailed
from izray.bo.surrogate import Hyperparameters
from izray.search.base import (
    STATE_VERSION,
    Candidate,
    Observation,
    OptimizerError,
    SearcherBase,
    Suggestion,
    check_int,
)

__all__ = ["STATE_VERSION", "Candidate", "Observation", "OptimizerError", "ProposalRequest",
           "ProposalResult", "TaskOptimizer", "run_proposal"]

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class ProposalRequest:
    """Picklable snapshot of everything one model-based proposal needs.

    Attributes:
        step: proposal step the candidates will carry.
        seed: seed of this proposal (derived from the optimizer seed and ``step``).
        q: number of points to propose.
        train_x: ``n x d`` observed points in ``[0, 1]^d``.
        train_y: ``n`` observed scores.
        train_s: ``n x m`` per-example dev scores.
        pending_x: ``p x d`` pending points in ``[0, 1]^d`` (``p`` may be 0).
        settings: proposal knobs.
        hyperparameters: warm start from the previous fit, or None.
    """

    step: int
    seed: int
    q: int
    train_x: Tensor
    train_y: Tensor
    train_s: Tensor
    pending_x: Tensor
    settings: ProposalSettings
    hyperparameters: Hyperparameters | None


@dataclass(frozen=True)
class ProposalResult:
    """Output of :func:`run_proposal`.

    Attributes:
        step: the request's step.
        points: ``q x d`` proposed points ``z`` in ``[-1, 1]^d``.
        hyperparameters: fitted hyperparameters (warm start of the next request).
        fit_seconds: surrogate fit time.
        acq_seconds: acquisition optimisation time.
        seconds: total wall time of the proposal.
        n_replaced: near-duplicate points replaced by Sobol points.
    """

    step: int
    points: Tensor
    hyperparameters: Hyperparameters
    fit_seconds: float
    acq_seconds: float
    seconds: float
    n_replaced: int


def run_proposal(request: ProposalRequest) -> ProposalResult:
    """Compute a proposal (pure: depends only on ``request``; safe in a Ray task)."""
    t0 = time.perf_counter()
    out = propose_detailed(
        request.train_x,
        request.train_y,
        request.train_s,
        request.pending_x,
        request.q,
        seed=request.seed,
        settings=request.settings,
        hyperparameters=request.hyperparameters,
    )
    z = (2.0 * out.points - 1.0).clamp(-1.0, 1.0)
    return ProposalResult(
        step=request.step,
        points=z,
        hyperparameters=out.hyperparameters,
        fit_seconds=out.fit_seconds,
        acq_seconds=out.acq_seconds,
        seconds=time.perf_counter() - t0,
        n_replaced=out.n_replaced,
    )


def _step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


class TaskOptimizer(SearcherBase):
    """InstructZero: ask/tell Bayesian optimisation over ``[-1, 1]^dim`` for one task.

    Args:
        dim: dimension ``d`` of ``z``.
        budget: maximum number of candidates ever issued (failures included).
        n_init: observations from the Sobol design before the model takes over.
        batch_size: default number of candidates per ``ask``/``proposal_request``.
        seed: seed of the Sobol design and of every proposal (``>= 0``).
        settings: proposal knobs.
    """

    strategy = "instructzero"

    def __init__(
        self,
        dim: int,
        budget: int,
        n_init: int,
        batch_size: int,
        seed: int,
        settings: ProposalSettings | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(budget, batch_size, seed)
        self.dim = check_int("dim", dim, 1)
        self.n_init = check_int("n_init", n_init, 1)
        if isinstance(settings, Mapping):
            settings = ProposalSettings.from_dict(settings)
        self.settings = settings or ProposalSettings()
        self._sobol = SobolEngine(dim, scramble=True, seed=seed)
        self._sobol_drawn = 0
        self._hyperparameters: Hyperparameters | None = None

    @property
    def phase(self) -> str:
        """One of ``"init"``, ``"wait"``, ``"model"``, ``"exhausted"`` (see module doc)."""
        if self.remaining == 0:
            return "exhausted"
        if self.n_observed >= self.n_init:
            return "model"
        if self._init_slots() > 0:
            return "init"
        return "wait"

    @property
    def hyperparameters(self) -> Hyperparameters | None:
        """Hyperparameters of the latest accepted proposal (warm start of the next)."""
        return self._hyperparameters

    def _init_slots(self) -> int:
        return max(0, self.n_init - self.n_observed - self.n_pending)

    # ------------------------------------------------------------------ issuing

    def sobol_candidates(self, n: int | None = None, *, force: bool = False) -> list[Candidate]:
        """Issue up to ``n`` (default ``batch_size``) Sobol points.

        Args:
            n: how many are wanted.
            force: issue Sobol points outside the init phase too (e.g. as a fallback when
                a remote proposal failed); always bounded by ``remaining``.

        Returns:
            The new candidates; without ``force`` at most the free initial-design slots.
        """
        n = self.batch_size if n is None else check_int("n", n, 0)
        allowed = self.remaining if force else min(self.remaining, self._init_slots())
        k = min(n, allowed)
        if k <= 0:
            return []
        u = self._sobol.draw(k, dtype=torch.double)
        self._sobol_drawn += k
        rows = (2.0 * u - 1.0).tolist()
        return self._issue([{"z": tuple(float(v) for v in row)} for row in rows],
                           self._next_step())

    def suggest(self, n: int | None = None) -> Suggestion:
        """Sobol points in the init phase; a model proposal request in the model phase."""
        if self.phase == "init":
            return Suggestion(tuple(self.sobol_candidates(n)))
        request = self.proposal_request(n)
        if request is None:
            return Suggestion()
        return Suggestion(request=request, compute=run_proposal)

    def fallback(self, n: int) -> list[Candidate]:
        """Sobol points in any phase (a remote proposal failed or gave only duplicates)."""
        return self.sobol_candidates(n, force=True)

    def proposal_request(self, n: int | None = None) -> ProposalRequest | None:
        """Snapshot for a model-based proposal of up to ``n`` (default ``batch_size``) points.

        Returns None unless the optimizer is in the ``"model"`` phase with budget left.
        Each request consumes a step (and thus a fresh seed) even if never accepted.
        """
        n = self.batch_size if n is None else check_int("n", n, 0)
        q = min(n, self.remaining)
        if self.phase != "model" or q <= 0:
            return None
        step = self._next_step()
        obs = self._observations
        z = torch.tensor([o.z for o in obs], dtype=torch.double)
        pending = [c.z for c in self.pending]
        pz = torch.tensor(pending, dtype=torch.double).reshape(len(pending), self.dim)
        return ProposalRequest(
            step=step,
            seed=_step_seed(self.seed, step),
            q=q,
            train_x=(z + 1.0) / 2.0,
            train_y=torch.tensor([o.score for o in obs], dtype=torch.double),
            train_s=torch.tensor([o.per_example for o in obs], dtype=torch.double),
            pending_x=(pz + 1.0) / 2.0,
            settings=self.settings,
            hyperparameters=self._hyperparameters,
        )

    def accept(self, result: ProposalResult) -> list[Candidate]:
        """Register a proposal's points as pending candidates.

        Points beyond the remaining budget are dropped, and so are points within
        ``settings.min_distance`` (in ``[0, 1]^d``) of a candidate issued meanwhile; both
        are logged. The result's hyperparameters become the next warm start.
        """
        points = result.points.detach().to(torch.double)
        if points.dim() != 2 or points.shape[-1] != self.dim:
            raise OptimizerError(
                f"accept: expected q x {self.dim} points, got {tuple(points.shape)}."
            )
        self._hyperparameters = result.hyperparameters
        if points.shape[0] > self.remaining:
            logger.info(
                "accept: budget allows %d of %d proposed points", self.remaining, points.shape[0]
            )
            points = points[: self.remaining]
        statuses = zip(self._candidates, self._status, strict=True)
        existing = [c.z for c, s in statuses if s != "failed"]
        kept = torch.tensor(existing, dtype=torch.double).reshape(len(existing), self.dim)
        rows = []
        for p in points:
            dist = torch.linalg.vector_norm((kept - p) / 2.0, dim=-1)
            if kept.shape[0] and float(dist.min()) < self.settings.min_distance:
                continue
            rows.append(p)
            kept = torch.cat([kept, p.unsqueeze(0)])
        if len(rows) < points.shape[0]:
            logger.info("accept: dropped %d near-duplicate points", points.shape[0] - len(rows))
        if not rows:
            return []
        specs = [{"z": tuple(float(v) for v in row)} for row in torch.stack(rows).tolist()]
        return self._issue(specs, result.step)

    # ------------------------------------------------------------------ state

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "dim": self.dim, "n_init": self.n_init,
                "settings": self.settings.to_dict()}

    def _extra_state(self) -> dict[str, Any]:
        hp = self._hyperparameters
        return {"sobol_drawn": self._sobol_drawn,
                "hyperparameters": None if hp is None else {k: list(v) for k, v in hp.items()}}

    def _restore_extra(self, state: Mapping[str, Any]) -> None:
        drawn = int(state["sobol_drawn"])
        if drawn:
            self._sobol.fast_forward(drawn)
        self._sobol_drawn = drawn
        hp = state["hyperparameters"]
        self._hyperparameters = (
            None if hp is None else {k: [float(v) for v in vs] for k, vs in hp.items()}
        )

    def _check_candidate(self, cand: Candidate) -> None:
        if cand.z is None or len(cand.z) != self.dim:
            raise OptimizerError(f"TaskOptimizer state: candidate {cand.id} has wrong dim.")
