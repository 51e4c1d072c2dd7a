"""APE (Zhou et al. 2022), forward mode: instructions sampled from exemplars, best on dev wins.

No soft prompt: the generator reads a *different random subset* of the task's exemplar pool for
every candidate, followed by the same induction cue InstructZero uses, and samples at a
temperature (APE used 0.9). Every distinct instruction is scored on the same dev set, and the
best dev score wins, as for the other strategies. A candidate's subset and sampling seed depend
only on the searcher's seed and the candidate's id, so a regenerated candidate (after a resume)
writes the same instruction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from izray import _constants as C
from izray.search.base import Candidate, OptimizerError, SearcherBase, Suggestion, check_int


class APESearcher(SearcherBase):
    """Sampled instructions from random exemplar subsets.

    Args:
        pool_size: Examples in the task's exemplar pool (``Splits.train``).
        n_exemplars: Exemplars shown per candidate (at most ``pool_size``).
        budget: Most candidates ever issued.
        batch_size: Default candidates per ``ask``.
        seed: Seed of the subsets and sampling seeds.
        temperature: Sampling temperature of the generator.
    """

    strategy = "ape"

    def __init__(self, pool_size: int, n_exemplars: int, budget: int, batch_size: int,
                 seed: int, temperature: float = C.APE_TEMPERATURE) -> None:
        super().__init__(budget, batch_size, seed)
        self.pool_size = check_int("pool_size", pool_size, 1)
        self.n_exemplars = min(check_int("n_exemplars", n_exemplars, 1), self.pool_size)
        if not 0.0 < float(temperature) <= 2.0:
            raise OptimizerError(f"ape: temperature must be in (0, 2], got {temperature!r}.")
        self.temperature = float(temperature)

    def spec(self, candidate_id: int) -> dict[str, Any]:
        """Exemplar subset and sampling seed of candidate ``candidate_id`` (pure)."""
        rng = np.random.default_rng([self.seed, candidate_id])
        subset = rng.choice(self.pool_size, size=self.n_exemplars, replace=False)
        return {"z": None, "exemplars": tuple(int(i) for i in subset),
                "temperature": self.temperature, "seed": int(rng.integers(0, 2**31 - 1))}

    def suggest(self, n: int | None = None) -> Suggestion:
        n = self.batch_size if n is None else check_int("n", n, 0)
        k = min(n, self.remaining)
        if k <= 0:
            return Suggestion()
        first = self.n_issued
        specs = [self.spec(first + i) for i in range(k)]
        return Suggestion(tuple(self._issue(specs, self._next_step())))

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "pool_size": self.pool_size,
                "n_exemplars": self.n_exemplars, "temperature": self.temperature}

    def _check_candidate(self, cand: Candidate) -> None:
        if cand.exemplars is None or any(not 0 <= i < self.pool_size for i in cand.exemplars):
            raise OptimizerError(f"searcher state: candidate {cand.id} has bad exemplars.")
