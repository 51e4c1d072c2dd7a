"""Racing: stop scoring a candidate on the dev set once it cannot beat the incumbent.

A candidate is first scored on a slice of ``k`` of the ``n`` dev examples. Its per-example
scores lie in ``[0, 1]``, so by Hoeffding's inequality the mean of the other ``n - k``
examples exceeds the slice mean by more than ``sqrt(ln(1/delta) / (2k))`` with probability at
most ``delta`` (treating the slice as a sample of the dev examples; the dev split is a random
subset and the slice its first ``k``). The candidate's full dev mean is then at most::

    upper = (sum(slice) + (n - k) * min(1, mean(slice) + sqrt(ln(1/delta) / (2k)))) / n

If ``upper`` is below the incumbent's dev score the candidate stops there (successive halving's
idea with a confidence bound instead of a fixed fraction); otherwise the rest is scored.

A stopped candidate still trains the model: the instruction-coupled kernel compares
per-example score vectors over the same ``n`` examples, so the missing ``n - k`` entries are
imputed with the slice mean (the unbiased estimate of each), and the candidate's score is
that slice mean. History records how many examples were scored (``dev_examples``).

Everything here is a pure function; :class:`izray.lifecycle.TaskRun` calls it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MIN_SLICE = 2
"""Fewest examples a first slice has: one example bounds nothing useful."""


def first_slice(n_dev: int, fraction: float) -> int:
    """Examples in the first slice (0: racing off or a dev set too small to split).

    Args:
        n_dev: dev examples ``n``.
        fraction: ``bo.racing``, the slice as a share of the dev set (0 turns racing off).
    """
    if fraction <= 0:
        return 0
    k = max(MIN_SLICE, math.ceil(fraction * n_dev))
    return k if k < n_dev else 0


def upper_bound(scores: Sequence[float], n_dev: int, delta: float) -> float:
    """Upper confidence bound (level ``1 - delta``) on the full dev mean from a slice."""
    k = len(scores)
    if k == 0:
        return 1.0
    mean = sum(scores) / k
    rest = min(1.0, mean + math.sqrt(math.log(1.0 / delta) / (2.0 * k)))
    return (sum(scores) + (n_dev - k) * rest) / n_dev


def stop_early(scores: Sequence[float], n_dev: int, incumbent: float | None,
               delta: float) -> bool:
    """Whether a candidate with first-slice ``scores`` cannot beat ``incumbent`` (its dev
    score; None when nothing was scored yet)."""
    if incumbent is None or len(scores) >= n_dev:
        return False
    return upper_bound(scores, n_dev, delta) < incumbent


def impute(scores: Sequence[float], n_dev: int) -> list[float]:
    """The ``n_dev`` per-example scores of a stopped candidate: the slice, then its mean."""
    mean = sum(scores) / len(scores)
    return [float(s) for s in scores] + [mean] * (n_dev - len(scores))
