"""Uniform: the paper's random baseline. Soft prompts drawn uniformly from the box, no model.

Each candidate's ``z`` depends only on the seed and the candidate's id, so a resumed run draws
exactly what an uninterrupted one would. The generator, its exemplars and the black box are the
same as InstructZero's: only the choice of ``z`` differs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from izray.search.base import Candidate, OptimizerError, SearcherBase, Suggestion, check_int


class UniformSearcher(SearcherBase):
    """Random soft prompts ``z ~ U[-1, 1]^dim``.

    Args:
        dim: Dimension ``d`` of ``z``.
        budget: Most candidates ever issued.
        batch_size: Default candidates per ``ask``.
        seed: Seed of the draws.
    """

    strategy = "uniform"

    def __init__(self, dim: int, budget: int, batch_size: int, seed: int) -> None:
        super().__init__(budget, batch_size, seed)
        self.dim = check_int("dim", dim, 1)

    def draw(self, candidate_id: int) -> tuple[float, ...]:
        """The point of candidate ``candidate_id`` (a pure function of seed and id)."""
        rng = np.random.default_rng([self.seed, candidate_id])
        return tuple(float(v) for v in rng.uniform(-1.0, 1.0, self.dim))

    def suggest(self, n: int | None = None) -> Suggestion:
        n = self.batch_size if n is None else check_int("n", n, 0)
        k = min(n, self.remaining)
        if k <= 0:
            return Suggestion()
        first = self.n_issued
        specs = [{"z": self.draw(first + i)} for i in range(k)]
        return Suggestion(tuple(self._issue(specs, self._next_step())))

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "dim": self.dim}

    def _check_candidate(self, cand: Candidate) -> None:
        if cand.z is None or len(cand.z) != self.dim:
            raise OptimizerError(f"searcher state: candidate {cand.id} has wrong dim.")
