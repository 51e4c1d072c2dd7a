"""Search strategies behind one protocol (:class:`~izray.search.base.SearcherBase`).

* ``instructzero``: :class:`izray.bo.TaskOptimizer`, a GP with the instruction-coupled kernel
  and qLogEI over soft-prompt points (the paper's method);
* ``uniform``: :class:`~izray.search.uniform.UniformSearcher`, random soft prompts;
* ``ape``: :class:`~izray.search.ape.APESearcher`, sampled instructions from random exemplar
  subsets, no soft prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from izray.search.base import (
    Candidate,
    Observation,
    OptimizerError,
    SearcherBase,
    Suggestion,
)

#: Strategy names, as the config key ``strategy`` takes them.
STRATEGIES = ("instructzero", "uniform", "ape")

__all__ = ["STRATEGIES", "Candidate", "Observation", "OptimizerError", "SearcherBase",
           "Suggestion", "load_searcher", "make_searcher", "searcher_class"]


def searcher_class(strategy: str) -> type[SearcherBase]:
    """The class implementing ``strategy`` (imported lazily: the BO stack is heavy)."""
    if strategy == "instructzero":
        from izray.bo.optimizer import TaskOptimizer

        return TaskOptimizer
    if strategy == "uniform":
        from izray.search.uniform import UniformSearcher

        return UniformSearcher
    if strategy == "ape":
        from izray.search.ape import APESearcher

        return APESearcher
    raise OptimizerError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def make_searcher(strategy: str, **kwargs: Any) -> SearcherBase:
    """A new searcher of ``strategy`` with its constructor arguments."""
    return searcher_class(strategy)(**kwargs)


def load_searcher(state: Mapping[str, Any]) -> SearcherBase:
    """Rebuild a searcher from its ``get_state`` (the strategy is part of the state)."""
    return searcher_class(str(state.get("strategy"))).from_state(state)
