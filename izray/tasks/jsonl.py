"""Loader for custom tasks stored as JSON Lines.

A custom task ``NAME`` is the file ``DATA/NAME.jsonl`` with one JSON object per line, either::

    {"input": "cat", "output": "cats"}
    {"input": "ox", "outputs": ["oxen", "oxes"]}

``outputs[0]`` (or ``output``) is the canonical answer shown in demonstrations; the rest are also
accepted. Blank lines are ignored. An optional ``DATA/NAME.test.jsonl`` in the same format is the
withheld test split; without it the task has ``test=None`` and the test split is carved out of the
pool when splitting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from izray.errors import TaskError
from izray.tasks.base import Example, Task
from izray.tasks.metrics import DEFAULT_METRIC, get_metric

__all__ = [
    "TEST_SUFFIX",
    "jsonl_path",
    "jsonl_test_path",
    "load_jsonl_task",
    "read_jsonl",
]

TEST_SUFFIX = ".test.jsonl"
"""File name suffix of a custom task's withheld test split."""


def jsonl_path(name: str, data_dir: Path | str) -> Path:
    """Path of a custom task's pool file, ``DATA/NAME.jsonl``."""
    return Path(data_dir) / f"{name}.jsonl"


def jsonl_test_path(name: str, data_dir: Path | str) -> Path:
    """Path of a custom task's optional test file, ``DATA/NAME.test.jsonl``."""
    return Path(data_dir) / f"{name}{TEST_SUFFIX}"


def _parse_record(record: Any) -> Example:
    if not isinstance(record, dict):
        raise TypeError(f"expected a JSON object, got {type(record).__name__}")
    text = record.get("input")
    if not isinstance(text, str) or not text.strip():
        raise ValueError('"input" is missing, empty or not a string')
    has_output, has_outputs = "output" in record, "outputs" in record
    if has_output == has_outputs:
        raise ValueError(
            'give exactly one of "output" (a string) or "outputs" (a list)'
        )
    if has_output:
        output = record["output"]
        if not isinstance(output, str) or not output.strip():
            raise ValueError('"output" is empty or not a string')
        return Example(text, (output,))
    outputs = record["outputs"]
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        raise ValueError('"outputs" must be a list of strings')
    answers = tuple(dict.fromkeys(o for o in outputs if o.strip()))
    if not answers:
        raise ValueError('"outputs" has no non-empty string')
    return Example(text, answers)


def read_jsonl(path: Path) -> tuple[Example, ...]:
    """Read one JSONL task file.

    Args:
        path: The file.

    Returns:
        Its examples, in file order.

    Raises:
        TaskError: If the file cannot be read, a line is not valid JSON or lacks the required
            fields (the message names the file and the 1-based line number), or it has no
            examples.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise TaskError(f"cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise TaskError(f"{path} is not UTF-8 text (re-save it as UTF-8)") from None
    examples = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise TaskError(
                f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno}); "
                "write one JSON object per line"
            ) from None
        try:
            examples.append(_parse_record(record))
        except (TypeError, ValueError) as err:
            raise TaskError(f"{path}:{lineno}: {err}") from None
    if not examples:
        raise TaskError(
            f'{path} has no examples (add lines like {{"input": "...", "output": "..."}})'
        )
    return tuple(examples)


def load_jsonl_task(
    name: str, data_dir: Path | str, metric: str = DEFAULT_METRIC
) -> Task:
    """Load a custom JSONL task.

    Args:
        name: The task name: the pool is ``DATA/NAME.jsonl``.
        data_dir: The data directory.
        metric: The metric to score it with (a key of
            :data:`~izray.tasks.metrics.METRICS`).

    Returns:
        The task, with ``test`` from ``DATA/NAME.test.jsonl`` if present, else ``None``.

    Raises:
        TaskError: If the pool file is missing, a file is malformed, or the metric is unknown.
    """
    get_metric(metric)
    pool_path = jsonl_path(name, data_dir)
    if not pool_path.is_file():
        raise TaskError(
            f"task {name!r} not found: {pool_path} does not exist "
            f"(izray tasks --data-dir {data_dir} lists the tasks)"
        )
    pool = read_jsonl(pool_path)
    test_path = jsonl_test_path(name, data_dir)
    test = read_jsonl(test_path) if test_path.is_file() else None
    return Task(name=name, metric=metric, pool=pool, test=test, source=str(pool_path))
