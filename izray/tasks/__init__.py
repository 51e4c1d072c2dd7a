"""Tasks: loading, splitting and scoring the tasks izray optimises instructions for.

Typical use::

    from izray.tasks import load_task, make_splits, score

    task = load_task("antonyms", data_dir="/data/instruction_induction")
    splits = make_splits(task, seed=0, n_exemplars=5, n_dev=20)
    value = score(task.metric, "unhappy", splits.dev[0].answers)

This package is plain Python (numpy only): it imports neither Ray nor torch.
"""

from izray.tasks.base import Example, Task
from izray.tasks.builtin import BUILTIN_TASKS, is_builtin, load_builtin_task
from izray.tasks.fetch import ALL_24, DEFAULT_URL, fetch_instruction_induction
from izray.tasks.induction import load_induction_task
from izray.tasks.jsonl import load_jsonl_task
from izray.tasks.metrics import (
    METRICS,
    TASK_METRICS,
    contains,
    exact_match,
    exact_set,
    f1,
    get_metric,
    metric_for_task,
    normalize,
    score,
)
from izray.tasks.registry import (
    ENV_DATA_DIR,
    TaskInfo,
    list_tasks,
    load_task,
    resolve_data_dir,
)
from izray.tasks.splits import Splits, make_splits

__all__ = [
    "ALL_24",
    "BUILTIN_TASKS",
    "DEFAULT_URL",
    "ENV_DATA_DIR",
    "METRICS",
    "TASK_METRICS",
    "Example",
    "Splits",
    "Task",
    "TaskInfo",
    "contains",
    "exact_match",
    "exact_set",
    "f1",
    "fetch_instruction_induction",
    "get_metric",
    "is_builtin",
    "list_tasks",
    "load_builtin_task",
    "load_induction_task",
    "load_jsonl_task",
    "load_task",
    "make_splits",
    "metric_for_task",
    "normalize",
    "resolve_data_dir",
    "score",
]
