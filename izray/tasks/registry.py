"""Finding and loading tasks by name.

A task name resolves, in this order, to:

1. a built-in task (:mod:`izray.tasks.builtin`), which needs no data directory;
2. an Instruction Induction task ``DATA/induce/NAME.json`` (:mod:`izray.tasks.induction`);
3. a custom JSONL task ``DATA/NAME.jsonl`` (:mod:`izray.tasks.jsonl`).

The data directory ``DATA`` is the one given explicitly, else the environment variable
``IZRAY_DATA_DIR``, else none (only the built-in tasks are available). A data directory that is
given must exist and contain at least one task.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from izray.errors import TaskError
from izray.tasks.base import Task
from izray.tasks.builtin import BUILTIN_TASKS, load_builtin_task
from izray.tasks.induction import load_induction_task
from izray.tasks.jsonl import TEST_SUFFIX, load_jsonl_task
from izray.tasks.metrics import TASK_METRICS, get_metric

__all__ = [
    "ENV_DATA_DIR",
    "TaskInfo",
    "TaskKind",
    "list_tasks",
    "load_task",
    "resolve_data_dir",
]

ENV_DATA_DIR = "IZRAY_DATA_DIR"
"""Environment variable naming the default data directory."""

TaskKind = Literal["builtin", "instruction_induction", "jsonl"]


@dataclass(frozen=True)
class TaskInfo:
    """A summary of one available task, as listed by :func:`list_tasks`.

    Attributes:
        name: The task name to pass to :func:`load_task`.
        source: The pool file's path, or ``"builtin"``.
        kind: ``"builtin"``, ``"instruction_induction"`` or ``"jsonl"``.
        n_pool: Number of pool examples.
        n_test: Number of withheld test examples, or ``None`` if the test split is carved out
            of the pool.
        metric: The task's default metric.
    """

    name: str
    source: str
    kind: TaskKind
    n_pool: int
    n_test: int | None
    metric: str


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """Pick the data directory: the argument, else ``$IZRAY_DATA_DIR``, else ``None``.

    Empty strings count as unset. ``~`` is expanded. Existence is not checked here.

    Args:
        data_dir: An explicit data directory, or ``None``.

    Returns:
        The data directory, or ``None`` if neither the argument nor the variable is set.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_DATA_DIR, "")
    return Path(env).expanduser() if env else None


def _discover(data_dir: Path) -> dict[str, TaskKind]:
    """Names and kinds of the tasks in ``data_dir``, built-ins excluded (they take precedence)."""
    if not data_dir.is_dir():
        what = "is not a directory" if data_dir.exists() else "does not exist"
        raise TaskError(
            f"data directory {data_dir} {what} (fix --data-dir or ${ENV_DATA_DIR}, "
            "or leave both unset to use only the built-in tasks)"
        )
    found: dict[str, TaskKind] = {}
    induce = data_dir / "induce"
    if induce.is_dir():
        for path in sorted(induce.glob("*.json")):
            if path.is_file() and not path.name.startswith("."):
                found.setdefault(path.stem, "instruction_induction")
    for path in sorted(data_dir.glob("*.jsonl")):
        if (
            path.is_file()
            and not path.name.startswith(".")
            and not path.name.endswith(TEST_SUFFIX)
        ):
            found.setdefault(path.name[: -len(".jsonl")], "jsonl")
    for name in BUILTIN_TASKS:
        found.pop(name, None)
    if not found:
        raise TaskError(
            f"data directory {data_dir} contains no tasks (expected induce/NAME.json or "
            f"NAME.jsonl files; fix --data-dir or ${ENV_DATA_DIR})"
        )
    return found


def _load(name: str, kind: TaskKind, data_dir: Path | None) -> Task:
    if kind == "builtin":
        return load_builtin_task(name)
    assert data_dir is not None
    if kind == "instruction_induction":
        return load_induction_task(name, data_dir)
    return load_jsonl_task(name, data_dir)


def list_tasks(data_dir: str | Path | None = None) -> list[TaskInfo]:
    """List the available tasks: the built-in ones, then those of the data directory by name.

    Every task is loaded to count its examples, so a malformed file raises here.

    Args:
        data_dir: The data directory; ``None`` falls back to ``$IZRAY_DATA_DIR``.

    Returns:
        One :class:`TaskInfo` per task. A data-directory task named like a built-in task is
        shadowed and not listed.

    Raises:
        TaskError: If the data directory does not exist or contains no tasks, or a task file
            is malformed.
    """
    resolved = resolve_data_dir(data_dir)
    kinds: dict[str, TaskKind] = dict.fromkeys(BUILTIN_TASKS, "builtin")
    if resolved is not None:
        kinds.update(_discover(resolved))
    infos = []
    for name, kind in kinds.items():
        task = _load(name, kind, resolved)
        infos.append(
            TaskInfo(
                name=name,
                source=task.source,
                kind=kind,
                n_pool=len(task.pool),
                n_test=None if task.test is None else len(task.test),
                metric=task.metric,
            )
        )
    return infos


def _check_name(name: str) -> None:
    if (
        not isinstance(name, str)
        or not name.strip()
        or name != name.strip()
        or name.startswith(".")
        or any(sep in name for sep in ("/", "\\", os.sep))
    ):
        raise TaskError(
            f"invalid task name {name!r} (use a plain name such as 'antonyms', "
            "without path separators)"
        )


def _not_found(name: str, data_dir: Path | None, candidates: list[str]) -> TaskError:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    if data_dir is None:
        if name in TASK_METRICS:
            return TaskError(
                f"task {name!r} is an Instruction Induction task but no data directory is set "
                f"(pass --data-dir or set ${ENV_DATA_DIR} to a directory holding "
                f"induce/{name}.json)"
            )
        return TaskError(
            f"task {name!r} is not a built-in task and no data directory is set (pass "
            f"--data-dir or set ${ENV_DATA_DIR}; izray tasks lists the tasks{hint})"
        )
    return TaskError(
        f"task {name!r} not found in {data_dir} "
        f"(izray tasks --data-dir {data_dir} lists them{hint})"
    )


def load_task(
    name: str, data_dir: str | Path | None = None, metric: str | None = None
) -> Task:
    """Load a task by name.

    Built-in tasks resolve first, then ``DATA/induce/NAME.json``, then ``DATA/NAME.jsonl``.

    Args:
        name: The task name.
        data_dir: The data directory; ``None`` falls back to ``$IZRAY_DATA_DIR``. If one is set
            it must exist and contain tasks, even when ``name`` is a built-in task.
        metric: A metric name overriding the task's default metric, or ``None``.

    Returns:
        The task.

    Raises:
        TaskError: If the name is invalid or unknown (the message suggests close names), the
            data directory does not exist or holds no tasks, a file is malformed, or the
            metric is unknown.
    """
    _check_name(name)
    if metric is not None:
        get_metric(metric)
    resolved = resolve_data_dir(data_dir)
    kinds: dict[str, TaskKind] = dict.fromkeys(BUILTIN_TASKS, "builtin")
    if resolved is not None:
        kinds.update(_discover(resolved))
    if name not in kinds:
        raise _not_found(name, resolved, list(kinds))
    task = _load(name, kinds[name], resolved)
    if metric is not None and metric != task.metric:
        task = replace(task, metric=metric)
    return task
