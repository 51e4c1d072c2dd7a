"""Loader for the Instruction Induction data layout.

A data directory holds ``induce/NAME.json`` (the pool that exemplars and the dev split come from)
and ``execute/NAME.json`` (the withheld test split). Each file is one JSON object::

    {"metadata": {"num_examples": N}, "examples": {"1": {...}, "2": {...}, ...}}

Most tasks have ``{"input": str, "output": str}`` examples; four kinds of task have other fields
and are turned into :class:`~izray.tasks.base.Example` here (see :func:`parse_example`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from izray.errors import TaskError
from izray.tasks.base import Example, Task
from izray.tasks.metrics import metric_for_task

__all__ = [
    "execute_path",
    "induce_path",
    "load_induction_task",
    "parse_example",
    "read_examples",
]


def induce_path(name: str, data_dir: Path | str) -> Path:
    """Path of a task's induction pool file, ``DATA/induce/NAME.json``."""
    return Path(data_dir) / "induce" / f"{name}.json"


def execute_path(name: str, data_dir: Path | str) -> Path:
    """Path of a task's withheld test file, ``DATA/execute/NAME.json``."""
    return Path(data_dir) / "execute" / f"{name}.json"


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _text(raw: dict[str, Any], field: str) -> str:
    value = raw.get(field)
    if not isinstance(value, str):
        raise TypeError(f"field {field!r} is missing or not a string")
    if not value.strip():
        raise ValueError(f"field {field!r} is empty")
    return value


def _texts(raw: dict[str, Any], field: str) -> list[str]:
    value = raw.get(field)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"field {field!r} is missing or not a list of strings")
    value = [v for v in value if v.strip()]
    if not value:
        raise ValueError(f"field {field!r} has no non-empty strings")
    return value


def _cause_first(cause: str, effect: str) -> bool:
    """Deterministic, process-independent coin flip for the sentence order of one example."""
    digest = hashlib.sha256(f"{cause}\n{effect}".encode()).digest()
    return digest[0] % 2 == 0


def parse_example(task: str, raw: Any) -> Example:
    """Turn one raw Instruction Induction example into an :class:`Example`.

    Special tasks:

    * ``cause_and_effect``: fields ``cause``, ``effect``. The input is
      ``"Sentence 1: A Sentence 2: B"`` with the two sentences in an order that is pseudo-random
      but fixed per example (from a SHA-256 of its text, so identical in every process); the only
      answer is the cause.
    * ``common_concept``: fields ``items``, ``all_common_concepts`` (and ``concept``). The input
      is the items joined by ", "; the answers are ``all_common_concepts``.
    * ``rhymes``: answers are ``other_rhymes`` with the example's ``output`` first.
    * ``translation_*``: answers are ``possible_translations`` with ``output`` first.

    Every other task uses ``input`` and answers ``(output,)``. Answer lists are de-duplicated,
    keeping their order.

    Args:
        task: The task name (selects the special handling).
        raw: The decoded JSON value of one example.

    Returns:
        The example.

    Raises:
        TypeError: If the example is not an object or a field is missing or of the wrong type.
        ValueError: If a field is empty. The caller adds the file and example id to the
            message of either.
    """
    if not isinstance(raw, dict):
        raise TypeError(f"expected an object, got {type(raw).__name__}")
    if task == "cause_and_effect":
        cause, effect = _text(raw, "cause"), _text(raw, "effect")
        first, second = (
            (cause, effect) if _cause_first(cause, effect) else (effect, cause)
        )
        return Example(f"Sentence 1: {first} Sentence 2: {second}", (cause,))
    if task == "common_concept":
        items = _texts(raw, "items")
        return Example(", ".join(items), _dedupe(_texts(raw, "all_common_concepts")))
    text, output = _text(raw, "input"), _text(raw, "output")
    if task == "rhymes":
        return Example(text, _dedupe([output, *_texts(raw, "other_rhymes")]))
    if task.startswith("translation_"):
        return Example(text, _dedupe([output, *_texts(raw, "possible_translations")]))
    return Example(text, (output,))


def _example_items(examples: Any) -> list[tuple[str, Any]]:
    if isinstance(examples, list):
        return [(str(i + 1), value) for i, value in enumerate(examples)]
    items = list(examples.items())
    if all(key.isdigit() for key, _ in items):
        items.sort(key=lambda item: int(item[0]))
    return items


def read_examples(path: Path, task: str) -> tuple[Example, ...]:
    """Read and parse one Instruction Induction JSON file.

    Args:
        path: The ``induce/`` or ``execute/`` file.
        task: The task name (selects the special handling of :func:`parse_example`).

    Returns:
        The examples, in the order of their numeric ids.

    Raises:
        TaskError: If the file cannot be read, is not valid JSON, has no non-empty
            ``"examples"`` object, or an example is malformed. The message names the file.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise TaskError(f"cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise TaskError(
            f"{path} is not UTF-8 text (re-save it as UTF-8 JSON)"
        ) from None
    except json.JSONDecodeError as err:
        raise TaskError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
        ) from None
    if not isinstance(data, dict) or "examples" not in data:
        raise TaskError(
            f'{path} has no "examples" object (expected {{"examples": {{"1": ...}}}})'
        )
    raw_examples = data["examples"]
    if not isinstance(raw_examples, dict | list):
        raise TaskError(f'{path}: "examples" must be an object of numbered examples')
    items = _example_items(raw_examples)
    if not items:
        raise TaskError(
            f'{path} has an empty "examples" object (add at least one example)'
        )
    examples = []
    for key, raw in items:
        try:
            examples.append(parse_example(task, raw))
        except (TypeError, ValueError) as err:
            raise TaskError(f"{path}: example {key!r}: {err}") from None
    return tuple(examples)


def load_induction_task(name: str, data_dir: Path | str) -> Task:
    """Load a task from an Instruction Induction data directory.

    The pool comes from ``DATA/induce/NAME.json``; the test split from ``DATA/execute/NAME.json``
    if that file exists, else the task has ``test=None`` and the test split is carved out of the
    pool when splitting. The metric is the task's entry in
    :data:`~izray.tasks.metrics.TASK_METRICS` (``exact_match`` for unknown names).

    Args:
        name: The task name, e.g. ``"antonyms"``.
        data_dir: The data directory.

    Returns:
        The task, with ``source`` set to the induce file's path.

    Raises:
        TaskError: If the induce file is missing, or either file is malformed.
    """
    pool_path = induce_path(name, data_dir)
    if not pool_path.is_file():
        raise TaskError(
            f"task {name!r} not found: {pool_path} does not exist "
            f"(izray tasks --data-dir {data_dir} lists the tasks)"
        )
    pool = read_examples(pool_path, name)
    test_path = execute_path(name, data_dir)
    test = read_examples(test_path, name) if test_path.is_file() else None
    return Task(
        name=name,
        metric=metric_for_task(name),
        pool=pool,
        test=test,
        source=str(pool_path),
    )
