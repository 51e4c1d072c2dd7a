"""Splitting a task into demonstration exemplars, a dev split and a test split.

* **exemplars**: the few input/output demonstrations the generator LLM sees when it writes a
  candidate instruction;
* **dev**: the examples each candidate instruction is scored on during optimisation;
* **test**: the withheld examples the final instruction is scored on.

Exemplars and dev are drawn from the task's pool and never share a pool position. When the task
has no withheld test split (``task.test is None``), a test split is carved out of the pool first,
so it is disjoint from both.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from izray.errors import TaskError
from izray.tasks.base import Example, Task

__all__ = ["CARVE_FRACTION", "Splits", "make_splits", "split_rng"]

CARVE_FRACTION = 0.2
"""Fraction of the pool carved out as the test split of a task without one (at least 1)."""


@dataclass(frozen=True)
class Splits:
    """The three splits of a task for one seed.

    Attributes:
        exemplars: Demonstrations shown to the generator LLM.
        dev: Examples that score candidate instructions during optimisation; never empty.
        test: Withheld examples that score the final instruction.
        train: The exemplar pool: every pool example in neither dev nor test, the exemplars
            first. Strategies that show the generator other demonstrations (APE draws a random
            subset per candidate) draw them from here; empty means ``exemplars``.
    """

    exemplars: tuple[Example, ...]
    dev: tuple[Example, ...]
    test: tuple[Example, ...]
    train: tuple[Example, ...] = ()

    @property
    def exemplar_pool(self) -> tuple[Example, ...]:
        """``train``, or ``exemplars`` when no pool was recorded."""
        return self.train or self.exemplars

    def fingerprint(self) -> str:
        """A digest of every example of every split, in order (16 hex digits): a resume checks
        that the task data it reads is what the run's observations were scored on."""
        parts = {name: [[ex.input, list(ex.answers)] for ex in getattr(self, name)]
                 for name in ("exemplars", "dev", "test", "train")}
        blob = json.dumps(parts, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def split_rng(seed: int, task_name: str) -> np.random.Generator:
    """The random generator of the splits of ``task_name`` under ``seed``.

    Seeded from the SHA-256 of ``f"{seed}:{task_name}"``, so it is the same in every process and
    on every platform (unlike Python's salted ``hash()``).
    """
    digest = hashlib.sha256(f"{seed}:{task_name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def _check_count(value: object, key: str, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        extra = " or null for all" if allow_none else ""
        raise TaskError(f"tasks.{key} must be a positive integer{extra}, got {value!r}")


def make_splits(
    task: Task,
    seed: int,
    n_exemplars: int = 5,
    n_dev: int = 20,
    n_test: int | None = None,
) -> Splits:
    """Split a task into exemplars, dev and test, deterministically per ``(seed, task.name)``.

    The pool is shuffled with :func:`split_rng`. Then:

    1. If ``task.test is None``, the first ``max(1, int(CARVE_FRACTION * len(pool)))`` shuffled
       pool examples become the test split (20% of the pool, at least one), so the test split is
       disjoint from the exemplars and dev; otherwise ``task.test`` is the test split.
    2. The next ``n_exemplars`` shuffled examples are the exemplars.
    3. The next ``min(n_dev, remaining)`` are the dev split, so dev is never empty and small
       tasks (15-26 pool examples) get a smaller dev split rather than an error.
       The exemplars and whatever is left after dev form ``train``, the exemplar pool.
    4. If ``n_test`` is set and smaller than the test split, a deterministic subset of
       ``n_test`` test examples is kept (in their original order).

    The dev split is fixed per task and seed. The InstructZero reference code re-sampled the dev
    subset for every candidate instruction, which makes the scores of different candidates
    incomparable and feeds noise into its instruction-coupled kernel; izray scores every
    candidate on the same dev split.

    Args:
        task: The task.
        seed: The run seed.
        n_exemplars: Number of demonstration exemplars (``tasks.n_exemplars``).
        n_dev: Maximum dev split size (``tasks.n_dev``).
        n_test: Maximum test split size (``tasks.n_test``), or ``None`` for all.

    Returns:
        The splits.

    Raises:
        TaskError: If a count is not a positive integer, or the pool (after carving a test split,
            if any) has fewer than ``n_exemplars + 1`` examples.
    """
    _check_count(n_exemplars, "n_exemplars")
    _check_count(n_dev, "n_dev")
    _check_count(n_test, "n_test", allow_none=True)
    pool = task.pool
    rng = split_rng(seed, task.name)
    order = [int(i) for i in rng.permutation(len(pool))]

    if task.test is None:
        n_carved = max(1, int(CARVE_FRACTION * len(pool)))
        carved, order = order[:n_carved], order[n_carved:]
        if n_test is not None:
            carved = carved[:n_test]
        test = tuple(pool[i] for i in sorted(carved))
        carved_note = f", {len(order)} after carving {n_carved} as its test split"
    else:
        test = task.test
        if n_test is not None and n_test < len(test):
            keep = sorted(int(i) for i in rng.permutation(len(test))[:n_test])
            test = tuple(test[i] for i in keep)
        carved_note = ""

    if len(order) < n_exemplars + 1:
        if len(order) >= 2:
            fix = (
                f"lower tasks.n_exemplars to at most {len(order) - 1}; "
                "dev gets the rest, up to tasks.n_dev"
            )
        else:
            fix = "add examples to the task"
        raise TaskError(
            f"task {task.name!r} has {len(pool)} pool examples{carved_note}, but "
            f"tasks.n_exemplars={n_exemplars} exemplars plus at least 1 dev example are "
            f"needed ({fix})"
        )
    n_dev_used = min(n_dev, len(order) - n_exemplars)
    exemplars = tuple(pool[i] for i in order[:n_exemplars])
    dev = tuple(pool[i] for i in order[n_exemplars : n_exemplars + n_dev_used])
    rest = tuple(pool[i] for i in order[n_exemplars + n_dev_used :])
    return Splits(exemplars=exemplars, dev=dev, test=test, train=exemplars + rest)
