"""Which instruction is tested: the best dev score, or the pick of a re-scoring.

Picking the best of ~150 instructions by a 20-example dev score overfits the dev set (the
winner's curse). With ``bo.rescore_top_k = k > 0`` the top-k distinct instructions are scored
on up to ``n_dev`` more examples before the test (the exemplar pool minus the exemplars,
never dev or test), and the one with the best mean over dev + those examples is tested.

A selection is a plain dict, saved as is in ``state/TASK.json`` and ``summary.json``::

    {"done": bool, "n_extra": int, "winner": str | None, "note": str (only if skipped),
     "rows": [{"instruction", "dev_score", "extra_score", "combined", "error"?}, ...]}

Everything here is a pure function of its arguments; :class:`izray.lifecycle.TaskRun` does
the asking, paying and saving.

Example:
    >>> from izray.search.base import Observation
    >>> obs = [Observation(0, None, 0, "a", 0.9, ()), Observation(1, None, 0, "b", 0.8, ())]
    >>> sel = start(top_distinct(obs, 2), n_extra=10)
    >>> record(sel, 0, 0.5, n_dev=10), record(sel, 1, 0.9, n_dev=10)
    (False, True)
    >>> sel["winner"]
    'b'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from izray.search.base import Observation
from izray.tasks import Example, Splits

__all__ = ["extra_examples", "record", "skipped", "start", "top_distinct", "winner"]


def extra_examples(splits: Splits, n_dev: int) -> tuple[Example, ...]:
    """Examples for re-scoring: the exemplar pool minus the exemplars, at most ``n_dev``."""
    n = len(splits.exemplars) if splits.train else len(splits.exemplar_pool)
    return splits.exemplar_pool[n:n + n_dev]


def top_distinct(observations: Iterable[Observation], k: int) -> list[Observation]:
    """The ``k`` best scored observations with distinct instructions, best first (ties keep
    the earliest, as :meth:`~izray.search.base.SearcherBase.best` does)."""
    seen: set[str] = set()
    out: list[Observation] = []
    ranked = sorted((o for o in observations if o.score is not None),
                    key=lambda o: (-o.score, o.candidate_id))
    for o in ranked:
        if o.instruction not in seen:
            seen.add(o.instruction)
            out.append(o)
    return out[:k]


def skipped(note: str) -> dict[str, Any]:
    """A finished selection that re-scored nothing (``note`` says why)."""
    return {"done": True, "rows": [], "winner": None, "note": note}


def start(top: Sequence[Observation], n_extra: int) -> dict[str, Any]:
    """A selection in flight over ``top`` on ``n_extra`` extra examples."""
    return {"done": False, "n_extra": n_extra, "winner": None,
            "rows": [{"instruction": o.instruction, "dev_score": o.score, "extra_score": None}
                     for o in top]}


def record(selection: dict[str, Any], i: int, extra_score: float | None, *, n_dev: int,
           error: str | None = None) -> bool:
    """Enter row ``i``'s extra-example score (or its ``error``); True once every row is in,
    when ``selection["winner"]`` is set: the best mean over dev + extra examples, ties to the
    better dev score (rows are in dev order)."""
    row = selection["rows"][i]
    if error is not None:
        row["error"] = error
    else:
        n_extra = selection["n_extra"]
        row["extra_score"] = float(extra_score)
        row["combined"] = (row["dev_score"] * n_dev + row["extra_score"] * n_extra) / (
            n_dev + n_extra)
    if not all(r["extra_score"] is not None or "error" in r for r in selection["rows"]):
        return False
    selection["done"] = True
    scored = [r for r in selection["rows"] if "combined" in r]
    if scored:
        selection["winner"] = max(scored, key=lambda r: r["combined"])["instruction"]
    return True


def winner(observations: Iterable[Observation], best: Observation | None,
           selection: dict[str, Any] | None) -> Observation | None:
    """The observation to test: the selection's pick if there is one, else ``best``."""
    pick = (selection or {}).get("winner")
    if pick is None or best is None:
        return best
    return next((o for o in observations if o.instruction == pick), best)
