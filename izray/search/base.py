"""The searcher protocol every strategy implements, and the bookkeeping they share.

A searcher decides what the generator is given next and learns from the scores. Its
candidates say what to generate from: a soft-prompt point ``z`` (InstructZero, Uniform), or
no soft prompt and a subset of exemplars sampled at a temperature (APE). One protocol, the
Ray Tune Searcher pattern:

* :meth:`SearcherBase.suggest` ``(n)`` returns a :class:`Suggestion`: either candidates
  issued at once, or a picklable ``request`` for a pure ``compute`` function that may run
  anywhere (a Ray task), whose result :meth:`SearcherBase.accept` turns into candidates;
* :meth:`SearcherBase.tell` reports a candidate's instruction and per-example dev scores
  (``None`` for a candidate whose evaluation failed);
* :meth:`SearcherBase.get_state` / :func:`izray.search.load_searcher` save and restore it,
  so a resumed run continues exactly where it stopped.

A searcher knows nothing about budgets of paid queries, caps or the black box: the task's
lifecycle (:class:`izray.lifecycle.TaskRun`) asks it for as many candidates as fit. Its own
``budget`` is a ceiling on candidates issued (``bo.max_candidates``).

Example:
    >>> from izray.search import make_searcher
    >>> s = make_searcher("uniform", dim=3, budget=10, batch_size=2, seed=0)
    >>> [c.id for c in s.ask(2)]
    [0, 1]
    >>> s.tell(0, "Write the plural.", 0.5, [1.0, 0.0]).score
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from izray.errors import IzrayError

#: Version of ``get_state``; :func:`izray.search.load_searcher` refuses any other.
STATE_VERSION = 2

_PENDING, _OBSERVED, _FAILED = "pending", "observed", "failed"


class OptimizerError(IzrayError):
    """An ask/tell call is inconsistent with the searcher's state, or a state is malformed."""


@dataclass(frozen=True)
class Candidate:
    """What the generator is given for one candidate instruction.

    Attributes:
        id: 0, 1, ... in issue order.
        z: Soft-prompt point in ``[-1, 1]^d``, or ``None`` for no soft prompt.
        step: Proposal step that issued it.
        exemplars: Indices into the task's exemplar pool (``Splits.train``) shown to the
            generator, or ``None`` for the task's fixed exemplars.
        temperature: Sampling temperature of the generator (0: greedy).
        seed: Sampling seed (with ``temperature > 0``), so a regenerated candidate writes the
            same instruction.
    """

    id: int
    z: tuple[float, ...] | None
    step: int
    exemplars: tuple[int, ...] | None = None
    temperature: float = 0.0
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "z": None if self.z is None else list(self.z),
                               "step": self.step}
        if self.exemplars is not None:
            out["exemplars"] = list(self.exemplars)
        if self.temperature:
            out["temperature"] = self.temperature
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Candidate:
        z = d.get("z")
        ex = d.get("exemplars")
        return cls(id=int(d["id"]), z=None if z is None else tuple(float(v) for v in z),
                   step=int(d["step"]), exemplars=None if ex is None else tuple(int(i) for i in ex),
                   temperature=float(d.get("temperature", 0.0)),
                   seed=None if d.get("seed") is None else int(d["seed"]))


@dataclass(frozen=True)
class Observation:
    """A scored candidate: its instruction, score and ``m`` per-example dev scores."""

    candidate_id: int
    z: tuple[float, ...] | None
    step: int
    instruction: str
    score: float
    per_example: tuple[float, ...]


@dataclass(frozen=True)
class Suggestion:
    """What :meth:`SearcherBase.suggest` returns.

    Attributes:
        candidates: Candidates issued now (already pending).
        request: Picklable work for ``compute``; its result goes to :meth:`SearcherBase.accept`.
        compute: Pure module-level function ``request -> result`` (safe in a Ray task).
    """

    candidates: tuple[Candidate, ...] = ()
    request: Any = None
    compute: Callable[[Any], Any] | None = None


def check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise OptimizerError(f"searcher: {name} must be an integer >= {minimum}, got {value!r}.")
    return value


class SearcherBase:
    """Candidates issued, pending, observed or failed; observations in tell order.

    Subclasses implement :meth:`suggest` (and :meth:`accept` if they compute remotely),
    :meth:`_config` (constructor arguments) and optionally :meth:`_extra_state` /
    :meth:`_restore_extra`.

    Args:
        budget: Most candidates ever issued (failures and duplicates included).
        batch_size: Default number of candidates per ``ask``.
        seed: Seed of every random choice (``>= 0``).
    """

    strategy: ClassVar[str] = ""

    def __init__(self, budget: int, batch_size: int, seed: int) -> None:
        self._budget = check_int("budget", budget, 0)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.seed = check_int("seed", seed, 0)
        self._step = 0
        self._m: int | None = None
        self._candidates: list[Candidate] = []  # index == id
        self._status: list[str] = []
        self._observations: list[Observation] = []  # in tell order

    # ------------------------------------------------------------------ counters

    @property
    def budget(self) -> int:
        """Most candidates ever issued; may be lowered (or raised) later."""
        return self._budget

    @budget.setter
    def budget(self, value: int) -> None:
        self._budget = check_int("budget", value, 0)

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

    def best(self) -> Observation | None:
        """Highest-scoring observation; ties go to the earliest issued candidate."""
        if not self._observations:
            return None
        return min(self._observations, key=lambda o: (-o.score, o.candidate_id))

    # ------------------------------------------------------------------ issuing

    def _next_step(self) -> int:
        step = self._step
        self._step += 1
        return step

    def _issue(self, specs: Sequence[Mapping[str, Any]], step: int) -> list[Candidate]:
        """Issue one candidate per spec (``Candidate`` fields other than ``id``/``step``)."""
        out = []
        for spec in specs:
            cand = Candidate(id=len(self._candidates), step=step, **spec)
            self._candidates.append(cand)
            self._status.append(_PENDING)
            out.append(cand)
        return out

    def suggest(self, n: int | None = None) -> Suggestion:
        """Up to ``n`` (default ``batch_size``) new candidates, or work that yields them."""
        raise NotImplementedError

    def accept(self, result: Any) -> list[Candidate]:
        """Register the result of ``Suggestion.compute(Suggestion.request)``."""
        raise OptimizerError(f"{self.strategy}: this searcher computes no remote proposals.")

    def fallback(self, n: int) -> list[Candidate]:
        """Candidates issued without the remote work (it failed, or proposed only duplicates)."""
        return list(self.suggest(n).candidates)

    def ask(self, n: int | None = None) -> list[Candidate]:
        """Issue up to ``n`` candidates, computing any remote work locally."""
        s = self.suggest(n)
        if s.request is not None and s.compute is not None:
            return self.accept(s.compute(s.request))
        return list(s.candidates)

    # ------------------------------------------------------------------ telling

    def tell(self, candidate_id: int, instruction: str, score: float | None,
             per_example: Sequence[float] | None) -> Observation | None:
        """Report a candidate's result.

        Args:
            candidate_id: Id of a pending candidate.
            instruction: The instruction the candidate decoded to.
            score: Its dev score, or None if its evaluation failed (it is then not an
                observation).
            per_example: The ``m`` per-example dev scores (required with a score; ``m`` is
                fixed by the first observation).

        Returns:
            The new observation, or None for a failure.
        """
        if not isinstance(candidate_id, int) or not 0 <= candidate_id < len(self._candidates):
            raise OptimizerError(f"tell: unknown candidate id {candidate_id!r}.")
        if self._status[candidate_id] != _PENDING:
            raise OptimizerError(
                f"tell: candidate {candidate_id} was already told ({self._status[candidate_id]}).")
        if score is None:
            self._status[candidate_id] = _FAILED
            return None
        if per_example is None:
            raise OptimizerError(f"tell: candidate {candidate_id} has a score but no per_example.")
        values = tuple(float(v) for v in per_example)
        score = float(score)
        if not math.isfinite(score) or not values or not all(math.isfinite(v) for v in values):
            raise OptimizerError(f"tell: candidate {candidate_id} needs a finite score and a "
                                 "non-empty, finite per_example.")
        if self._m is not None and len(values) != self._m:
            raise OptimizerError(f"tell: candidate {candidate_id} has {len(values)} per-example "
                                 f"scores; this task has {self._m}.")
        self._m = len(values)
        cand = self._candidates[candidate_id]
        obs = Observation(candidate_id, cand.z, cand.step, str(instruction), score, values)
        self._status[candidate_id] = _OBSERVED
        self._observations.append(obs)
        self._on_observed(obs)
        return obs

    def _on_observed(self, obs: Observation) -> None:
        """Hook for subclasses (e.g. a model's data)."""

    # ------------------------------------------------------------------ state

    def _config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable), as ``from_state`` passes them back."""
        return {"budget": self._budget, "batch_size": self.batch_size, "seed": self.seed}

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _restore_extra(self, state: Mapping[str, Any]) -> None:
        """Restore what ``_extra_state`` saved (after candidates and observations)."""

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable state (plain lists, floats, ints and strings)."""
        return {
            "version": STATE_VERSION,
            "strategy": self.strategy,
            "config": self._config(),
            "step": self._step,
            "m": self._m,
            "candidates": [dict(c.to_dict(), status=s)
                           for c, s in zip(self._candidates, self._status, strict=True)],
            "observations": [{"candidate_id": o.candidate_id, "instruction": o.instruction,
                              "score": o.score, "per_example": list(o.per_example)}
                             for o in self._observations],
            **self._extra_state(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SearcherBase:
        """Rebuild a searcher from ``get_state``; later suggestions match an uninterrupted run."""
        if state.get("version") != STATE_VERSION:
            raise OptimizerError(f"searcher state version {state.get('version')!r} is not "
                                 f"{STATE_VERSION} (a run made by another izray version)")
        if state.get("strategy") != cls.strategy:
            raise OptimizerError(f"searcher state is for {state.get('strategy')!r}, not "
                                 f"{cls.strategy!r}")
        try:
            obj = cls(**dict(state["config"]))
            obj._step = int(state["step"])
            obj._m = state["m"]
            for i, c in enumerate(state["candidates"]):
                cand = Candidate.from_dict(c)
                if cand.id != i or c["status"] not in (_PENDING, _OBSERVED, _FAILED):
                    raise OptimizerError(f"searcher state: bad candidate entry {c!r}.")
                obj._check_candidate(cand)
                obj._candidates.append(cand)
                obj._status.append(c["status"])
            for o in state["observations"]:
                cand = obj._candidates[o["candidate_id"]]
                obs = Observation(cand.id, cand.z, cand.step, str(o["instruction"]),
                                  float(o["score"]),
                                  tuple(float(v) for v in o["per_example"]))
                obj._observations.append(obs)
                obj._on_observed(obs)
            obj._restore_extra(state)
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise OptimizerError(f"searcher state is malformed: {err!r}.") from err
        if sorted(o.candidate_id for o in obj._observations) != [
                i for i, s in enumerate(obj._status) if s == _OBSERVED]:
            raise OptimizerError("searcher state: observations and statuses disagree.")
        return obj

    def _check_candidate(self, cand: Candidate) -> None:
        """Raise OptimizerError if a restored candidate does not fit this searcher."""
