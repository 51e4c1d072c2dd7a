"""Core task data types: :class:`Example` and :class:`Task`.

A task is a named pool of input/answer examples plus, optionally, a withheld test split and
the name of the metric that scores a model's prediction against an example's answers. Tasks are
immutable values: loaders build them once and everything downstream only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

from izray.errors import TaskError
from izray.tasks.metrics import METRICS


@dataclass(frozen=True)
class Example:
    """One input with the answers accepted for it.

    Attributes:
        input: The text shown to the model.
        answers: Accepted outputs, never empty. ``answers[0]`` is the canonical output, the one
            shown when the example is used as a demonstration; the others are also scored as
            correct.
    """

    input: str
    answers: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.answers, tuple):
            # Accept any sequence (a list from JSON) but store a hashable tuple.
            object.__setattr__(self, "answers", tuple(self.answers))
        if not self.answers:
            raise TaskError(
                f"example {self.input[:40]!r} has no answers (give at least one)"
            )

    @property
    def output(self) -> str:
        """The canonical output (``answers[0]``)."""
        return self.answers[0]


@dataclass(frozen=True)
class Task:
    """A named task: an example pool, an optional withheld test split and a metric.

    Attributes:
        name: Task name, as given to :func:`izray.tasks.load_task`.
        metric: Name of the metric in :data:`izray.tasks.metrics.METRICS` used to score it.
        pool: The induction pool; demonstration exemplars and the dev split are drawn from it.
        test: The withheld test split, or ``None`` when the task has none and the test split
            must be carved out of the pool (see :func:`izray.tasks.make_splits`).
        source: Where the task came from: a file path, or ``"builtin"``.
    """

    name: str
    metric: str
    pool: tuple[Example, ...]
    test: tuple[Example, ...] | None
    source: str

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            valid = ", ".join(sorted(METRICS))
            raise TaskError(
                f"task {self.name!r} has unknown metric {self.metric!r} (choose one of: {valid})"
            )
        if not isinstance(self.pool, tuple):
            object.__setattr__(self, "pool", tuple(self.pool))
        if self.test is not None and not isinstance(self.test, tuple):
            object.__setattr__(self, "test", tuple(self.test))
        if not self.pool:
            raise TaskError(
                f"task {self.name!r} from {self.source} has no examples in its pool"
            )
        if self.test is not None and not self.test:
            raise TaskError(
                f"task {self.name!r} from {self.source} has an empty test split "
                "(remove it to carve the test split out of the pool)"
            )
