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
``accept`` registers the result. ``ask`` does all three locally.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.quasirandom import SobolEngine

from izray.bo.proposal import ProposalSettings, propose_detailed
from izray.bo.surrogate import Hyperparameters
from izray.errors import IzrayError

logger = logging.getLogger(__name__)

STATE_VERSION = 1
"""Version of the ``get_state`` format; ``from_state`` refuses any other."""

_PENDING, _OBSERVED, _FAILED = "pending", "observed", "failed"


class OptimizerError(IzrayError):
    """An ask/tell call is inconsistent with the optimizer's state."""


@dataclass(frozen=True)
class Candidate:
    """An issued point: ``id`` (0, 1, ...), ``z`` in ``[-1, 1]^d``, proposal ``step``."""

    id: int
    z: tuple[float, ...]
    step: int


@dataclass(frozen=True)
class Observation:
    """A scored candidate: its instruction, score and ``m`` per-example dev scores."""

    candidate_id: int
    z: tuple[float, ...]
    step: int
    instruction: str
    score: float
    per_example: tuple[float, ...]


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


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise OptimizerError(
            f"TaskOptimizer: {name} must be an integer >= {minimum}, got {value!r}."
        )
    return value


class TaskOptimizer:
    """Ask/tell Bayesian optimisation over ``[-1, 1]^dim`` for one task.

    Args:
        dim: dimension ``d`` of ``z``.
        budget: maximum number of candidates ever issued (failures included).
        n_init: observations from the Sobol design before the model takes over.
        batch_size: default number of candidates per ``ask``/``proposal_request``.
        seed: seed of the Sobol design and of every proposal (``>= 0``).
        settings: proposal knobs.
    """

    def __init__(
        self,
        dim: int,
        budget: int,
        n_init: int,
        batch_size: int,
        seed: int,
        settings: ProposalSettings | None = None,
    ) -> None:
        self.dim = _check_int("dim", dim, 1)
        self._budget = _check_int("budget", budget, 0)
        self.n_init = _check_int("n_init", n_init, 1)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.seed = _check_int("seed", seed, 0)
        self.settings = settings or ProposalSettings()
        self._sobol = SobolEngine(dim, scramble=True, seed=seed)
        self._sobol_drawn = 0
        self._step = 0
        self._m: int | None = None
        self._hyperparameters: Hyperparameters | None = None
        self._candidates: list[Candidate] = []  # index == id
        self._status: list[str] = []
        self._observations: list[Observation] = []  # in tell order

    # ------------------------------------------------------------------ counters

    @property
    def budget(self) -> int:
        """Maximum number of candidates ever issued; may be lowered (or raised) later."""
        return self._budget

    @budget.setter
    def budget(self, value: int) -> None:
        self._budget = _check_int("budget", value, 0)

    @property
    def n_issued(self) -> int:
        """Candidates issued so far (pending, observed and failed)."""
        return len(self._candidates)

    @property
    def n_observed(self) -> int:
        """Candidates told with a score."""
        return len(self._observations)

    @property
    def n_pending(self) -> int:
        """Candidates issued but not yet told."""
        return self._status.count(_PENDING)

    @property
    def n_failed(self) -> int:
        """Candidates told as failed (``score=None``)."""
        return self._status.count(_FAILED)

    @property
    def remaining(self) -> int:
        """Candidates that may still be issued."""
        return max(0, self._budget - self.n_issued)

    @property
    def done(self) -> bool:
        """True once the whole budget is issued and nothing is pending."""
        return self.remaining == 0 and self.n_pending == 0

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
    def candidates(self) -> list[Candidate]:
        """All issued candidates in id order."""
        return list(self._candidates)

    @property
    def pending(self) -> list[Candidate]:
        """Candidates issued but not yet told, in id order."""
        return [c for c, s in zip(self._candidates, self._status, strict=True) if s == _PENDING]

    @property
    def observations(self) -> list[Observation]:
        """Observations in the order they were told."""
        return list(self._observations)

    @property
    def hyperparameters(self) -> Hyperparameters | None:
        """Hyperparameters of the latest accepted proposal (warm start of the next)."""
        return self._hyperparameters

    def best(self) -> Observation | None:
        """Highest-scoring observation; ties go to the earliest issued candidate."""
        if not self._observations:
            return None
        return min(self._observations, key=lambda o: (-o.score, o.candidate_id))

    def _init_slots(self) -> int:
        return max(0, self.n_init - self.n_observed - self.n_pending)

    # ------------------------------------------------------------------ issuing

    def _issue(self, zs: Tensor, step: int) -> list[Candidate]:
        out = []
        for row in zs.tolist():
            cand = Candidate(id=len(self._candidates), z=tuple(float(v) for v in row), step=step)
            self._candidates.append(cand)
            self._status.append(_PENDING)
            out.append(cand)
        return out

    def sobol_candidates(self, n: int | None = None, *, force: bool = False) -> list[Candidate]:
        """Issue up to ``n`` (default ``batch_size``) Sobol points.

        Args:
            n: how many are wanted.
            force: issue Sobol points outside the init phase too (e.g. as a fallback when
                a remote proposal failed); always bounded by ``remaining``.

        Returns:
            The new candidates; without ``force`` at most the free initial-design slots.
        """
        n = self.batch_size if n is None else _check_int("n", n, 0)
        allowed = self.remaining if force else min(self.remaining, self._init_slots())
        k = min(n, allowed)
        if k <= 0:
            return []
        u = self._sobol.draw(k, dtype=torch.double)
        self._sobol_drawn += k
        step = self._step
        self._step += 1
        return self._issue(2.0 * u - 1.0, step)

    def proposal_request(self, n: int | None = None) -> ProposalRequest | None:
        """Snapshot for a model-based proposal of up to ``n`` (default ``batch_size``) points.

        Returns None unless the optimizer is in the ``"model"`` phase with budget left.
        Each request consumes a step (and thus a fresh seed) even if never accepted.
        """
        n = self.batch_size if n is None else _check_int("n", n, 0)
        q = min(n, self.remaining)
        if self.phase != "model" or q <= 0:
            return None
        step = self._step
        self._step += 1
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
        existing = [c.z for c, s in statuses if s != _FAILED]
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
        return self._issue(torch.stack(rows), result.step)

    def ask(self, n: int | None = None) -> list[Candidate]:
        """Issue up to ``n`` (default ``batch_size``) candidates, computing proposals locally.

        Returns an empty list in the ``"wait"`` and ``"exhausted"`` phases.
        """
        if self.phase == "init":
            return self.sobol_candidates(n)
        request = self.proposal_request(n)
        if request is None:
            return []
        return self.accept(run_proposal(request))

    # ------------------------------------------------------------------ telling

    def tell(
        self,
        candidate_id: int,
        instruction: str,
        score: float | None,
        per_example: Sequence[float] | None,
    ) -> Observation | None:
        """Report a candidate's result.

        Args:
            candidate_id: id of a pending candidate.
            instruction: the instruction the candidate decoded to.
            score: its score, or None if the candidate failed (it then still counts
                against the budget but is not an observation).
            per_example: the ``m`` per-example dev scores (required with a score; ``m`` is
                fixed by the first observation).

        Returns:
            The new observation, or None for a failure.
        """
        if not isinstance(candidate_id, int) or not 0 <= candidate_id < len(self._candidates):
            raise OptimizerError(f"tell: unknown candidate id {candidate_id!r}.")
        if self._status[candidate_id] != _PENDING:
            raise OptimizerError(
                f"tell: candidate {candidate_id} was already told ({self._status[candidate_id]})."
            )
        if score is None:
            self._status[candidate_id] = _FAILED
            return None
        if per_example is None:
            raise OptimizerError(f"tell: candidate {candidate_id} has a score but no per_example.")
        values = tuple(float(v) for v in per_example)
        score = float(score)
        if not math.isfinite(score) or not all(math.isfinite(v) for v in values) or not values:
            raise OptimizerError(
                f"tell: candidate {candidate_id} needs a finite score and a non-empty, finite "
                "per_example."
            )
        if self._m is not None and len(values) != self._m:
            raise OptimizerError(
                f"tell: candidate {candidate_id} has {len(values)} per-example scores; this "
                f"task has {self._m}."
            )
        self._m = len(values)
        cand = self._candidates[candidate_id]
        obs = Observation(
            candidate_id=candidate_id,
            z=cand.z,
            step=cand.step,
            instruction=str(instruction),
            score=score,
            per_example=values,
        )
        self._status[candidate_id] = _OBSERVED
        self._observations.append(obs)
        return obs

    # ------------------------------------------------------------------ state

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable state (plain lists, floats, ints and strings)."""
        return {
            "version": STATE_VERSION,
            "dim": self.dim,
            "budget": self._budget,
            "n_init": self.n_init,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "settings": self.settings.to_dict(),
            "sobol_drawn": self._sobol_drawn,
            "step": self._step,
            "m": self._m,
            "hyperparameters": (
                None
                if self._hyperparameters is None
                else {k: list(v) for k, v in self._hyperparameters.items()}
            ),
            "candidates": [
                {"id": c.id, "z": list(c.z), "step": c.step, "status": s}
                for c, s in zip(self._candidates, self._status, strict=True)
            ],
            "observations": [
                {
                    "candidate_id": o.candidate_id,
                    "instruction": o.instruction,
                    "score": o.score,
                    "per_example": list(o.per_example),
                }
                for o in self._observations
            ],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TaskOptimizer:
        """Rebuild an optimizer from ``get_state``; later asks match an uninterrupted run."""
        if state.get("version") != STATE_VERSION:
            raise OptimizerError(
                f"TaskOptimizer state version {state.get('version')!r} is not {STATE_VERSION}."
            )
        try:
            opt = cls(
                dim=state["dim"],
                budget=state["budget"],
                n_init=state["n_init"],
                batch_size=state["batch_size"],
                seed=state["seed"],
                settings=ProposalSettings.from_dict(state["settings"]),
            )
            if state["sobol_drawn"]:
                opt._sobol.fast_forward(int(state["sobol_drawn"]))
            opt._sobol_drawn = int(state["sobol_drawn"])
            opt._step = int(state["step"])
            opt._m = state["m"]
            hp = state["hyperparameters"]
            opt._hyperparameters = (
                None if hp is None else {k: [float(v) for v in vs] for k, vs in hp.items()}
            )
            for i, c in enumerate(state["candidates"]):
                if c["id"] != i or c["status"] not in (_PENDING, _OBSERVED, _FAILED):
                    raise OptimizerError(f"TaskOptimizer state: bad candidate entry {c!r}.")
                if len(c["z"]) != opt.dim:
                    raise OptimizerError(f"TaskOptimizer state: candidate {i} has wrong dim.")
                opt._candidates.append(
                    Candidate(id=i, z=tuple(float(v) for v in c["z"]), step=int(c["step"]))
                )
                opt._status.append(c["status"])
            for o in state["observations"]:
                cand = opt._candidates[o["candidate_id"]]
                opt._observations.append(
                    Observation(
                        candidate_id=cand.id,
                        z=cand.z,
                        step=cand.step,
                        instruction=o["instruction"],
                        score=float(o["score"]),
                        per_example=tuple(float(v) for v in o["per_example"]),
                    )
                )
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise OptimizerError(f"TaskOptimizer state is malformed: {err!r}.") from err
        if sorted(o.candidate_id for o in opt._observations) != [
            i for i, s in enumerate(opt._status) if s == _OBSERVED
        ]:
            raise OptimizerError("TaskOptimizer state: observations and statuses disagree.")
        return opt
