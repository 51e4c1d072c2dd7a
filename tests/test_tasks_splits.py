"""Tests of izray.tasks.splits.make_splits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from izray.errors import TaskError
from izray.tasks import ALL_24, Example, Splits, Task, load_task, make_splits

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shared_tasks(ii_data_dir: Path) -> dict[str, Task]:
    return {name: load_task(name, ii_data_dir) for name in ALL_24}


def make_task(n_pool: int, n_test: int | None = None, name: str = "toy") -> Task:
    pool = tuple(Example(f"in{i}", (f"out{i}",)) for i in range(n_pool))
    test = (
        None
        if n_test is None
        else tuple(Example(f"t{i}", (f"o{i}",)) for i in range(n_test))
    )
    return Task(name=name, metric="exact_match", pool=pool, test=test, source="memory")


def positions(task: Task, examples: tuple[Example, ...]) -> list[int]:
    """Pool positions of examples, by identity (pools may hold equal duplicates)."""
    by_id = {id(e): i for i, e in enumerate(task.pool)}
    return [by_id[id(e)] for e in examples]


def one_line(err: pytest.ExceptionInfo[TaskError]) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


# --------------------------------------------------------------------------------------------
# The 24 shared tasks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_24)
def test_shared_task_splits(name: str, shared_tasks: dict[str, Task]) -> None:
    task = shared_tasks[name]
    splits = make_splits(task, seed=0)
    assert isinstance(splits, Splits)
    assert len(splits.exemplars) == 5
    assert len(splits.dev) == min(20, len(task.pool) - 5) > 0
    ex_pos, dev_pos = positions(task, splits.exemplars), positions(task, splits.dev)
    assert len(set(ex_pos + dev_pos)) == len(ex_pos) + len(
        dev_pos
    )  # disjoint, no repeats
    assert splits.test == task.test

    again = make_splits(task, seed=0)
    assert again == splits
    other = make_splits(task, seed=1)
    assert (other.exemplars, other.dev) != (splits.exemplars, splits.dev)


@pytest.mark.parametrize(
    ("name", "n_dev"),
    [("cause_and_effect", 20), ("common_concept", 12), ("informal_to_formal", 10)],
)
def test_small_tasks_get_the_rest_as_dev(
    name: str, n_dev: int, shared_tasks: dict[str, Task]
) -> None:
    task = shared_tasks[name]
    splits = make_splits(task, seed=3, n_exemplars=5, n_dev=20)
    assert len(splits.dev) == n_dev
    if (
        name == "informal_to_formal"
    ):  # 15 = 5 + 10: exemplars and dev use the whole pool
        assert sorted(positions(task, splits.exemplars + splits.dev)) == list(range(15))


def test_n_test_caps_the_test_split(shared_tasks: dict[str, Task]) -> None:
    task = shared_tasks["antonyms"]
    assert task.test is not None
    capped = make_splits(task, seed=0, n_test=10)
    assert len(capped.test) == 10
    test_index = {id(e): i for i, e in enumerate(task.test)}
    picked = [test_index[id(e)] for e in capped.test]
    assert picked == sorted(picked)  # a subset kept in file order
    assert picked != list(range(10))  # ... chosen at random, not the first ten
    assert make_splits(task, seed=0, n_test=10).test == capped.test
    assert make_splits(task, seed=1, n_test=10).test != capped.test
    assert make_splits(task, seed=0, n_test=1000).test == task.test
    # The cap does not move the exemplars or dev.
    full = make_splits(task, seed=0)
    assert (capped.exemplars, capped.dev) == (full.exemplars, full.dev)


def test_splits_are_stable_across_processes(ii_data_dir: Path) -> None:
    here = make_splits(load_task("common_concept", ii_data_dir), seed=7)
    code = (
        "import json, sys; from izray.tasks import load_task, make_splits; "
        "s = make_splits(load_task('common_concept', sys.argv[1]), seed=7); "
        "print(json.dumps([[e.input for e in s.exemplars], [e.input for e in s.dev]]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(ii_data_dir)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(out.stdout) == [
        [e.input for e in here.exemplars],
        [e.input for e in here.dev],
    ]


# --------------------------------------------------------------------------------------------
# Synthetic tasks
# --------------------------------------------------------------------------------------------


def test_splits_depend_on_the_task_name() -> None:
    a = make_splits(make_task(100, 10, name="a"), seed=0)
    b = make_splits(make_task(100, 10, name="b"), seed=0)
    assert [e.input for e in a.exemplars + a.dev] != [
        e.input for e in b.exemplars + b.dev
    ]


def test_changing_n_dev_keeps_the_exemplars() -> None:
    task = make_task(100, 10)
    small, large = make_splits(task, 5, n_dev=3), make_splits(task, 5, n_dev=30)
    assert small.exemplars == large.exemplars
    assert large.dev[:3] == small.dev
    assert len(large.dev) == 30


def test_carved_test_split() -> None:
    task = make_task(30)
    splits = make_splits(task, seed=0)
    assert len(splits.test) == 6  # 20% of 30
    assert len(splits.exemplars) == 5 and len(splits.dev) == 19  # min(20, 30 - 6 - 5)
    test_pos = positions(task, splits.test)
    assert test_pos == sorted(test_pos)
    used = positions(task, splits.exemplars) + positions(task, splits.dev) + test_pos
    assert len(set(used)) == len(used) == 30
    assert make_splits(task, seed=0) == splits
    assert make_splits(task, seed=1).test != splits.test
    capped = make_splits(task, seed=0, n_test=2)
    assert len(capped.test) == 2 and set(capped.test) <= set(splits.test)
    assert (capped.exemplars, capped.dev) == (splits.exemplars, splits.dev)


def test_carving_takes_at_least_one_example() -> None:
    splits = make_splits(make_task(7), seed=0)
    assert (len(splits.test), len(splits.exemplars), len(splits.dev)) == (1, 5, 1)


def test_too_few_examples() -> None:
    with pytest.raises(TaskError) as info:
        make_splits(make_task(5, 3), seed=0)
    message = one_line(info)
    assert "task 'toy' has 5 pool examples" in message
    assert "tasks.n_exemplars" in message and "tasks.n_dev" in message
    assert "at most 4" in message
    assert len(make_splits(make_task(5, 3), seed=0, n_exemplars=4).dev) == 1


def test_too_few_examples_after_carving() -> None:
    with pytest.raises(TaskError) as info:
        make_splits(make_task(6), seed=0)
    assert "has 6 pool examples, 5 after carving 1 as its test split" in one_line(info)
    with pytest.raises(TaskError) as info:
        make_splits(make_task(1), seed=0)
    assert "add examples" in one_line(info)


def test_too_few_examples_in_a_shared_task(shared_tasks: dict[str, Task]) -> None:
    with pytest.raises(TaskError) as info:
        make_splits(shared_tasks["informal_to_formal"], seed=0, n_exemplars=15)
    assert "has 15 pool examples" in one_line(info)
    splits = make_splits(shared_tasks["informal_to_formal"], seed=0, n_exemplars=14)
    assert len(splits.dev) == 1


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"n_exemplars": 0}, "tasks.n_exemplars"),
        ({"n_exemplars": -1}, "tasks.n_exemplars"),
        ({"n_dev": 0}, "tasks.n_dev"),
        ({"n_dev": 2.5}, "tasks.n_dev"),
        ({"n_test": 0}, "tasks.n_test"),
        ({"n_test": True}, "tasks.n_test"),
    ],
)
def test_invalid_counts(kwargs: dict, key: str) -> None:
    with pytest.raises(TaskError) as info:
        make_splits(make_task(50, 5), seed=0, **kwargs)
    assert f"{key} must be a positive integer" in one_line(info)
