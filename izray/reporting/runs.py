"""Run directories read into :class:`Run` and :class:`Report` rows (see :mod:`izray.reporting`).

A finished task's row comes from ``summary.json``; a task not finished yet is rebuilt from
``history.jsonl``, ``state/TASK.json`` and ``ledger.sqlite``. Nothing here formats or plots.

Example:
    report = load_report(["runs/iz", "runs/uniform"])
    report.means[0]["test_score"]
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from izray.errors import RunStateError
from izray.report import CONFIG, HISTORY, LEDGER, SUMMARY

#: (row key, table heading) of the table, in order. ``run`` and the two differences only
#: appear with several runs.
COLUMNS = [("task", "task"), ("run", "run"), ("strategy", "strategy"), ("metric", "metric"),
           ("status", "status"), ("reference_test", "ref test"), ("dev_score", "best dev"),
           ("test_score", "test"), ("diff_test", "Δtest"), ("diff_dev", "Δdev"),
           ("queries", "queries"), ("candidates", "cand"), ("failed", "failed"),
           ("api_calls", "API calls"), ("tokens", "tokens"), ("usd", "USD"),
           ("stopped_by", "stopped by")]
#: Every key of a row (csv columns, json fields).
FIELDS = [k for k, _ in COLUMNS] + ["reference_dev", "prompt_tokens", "completion_tokens",
                                    "wall_s", "n_dev", "n_test", "stopped", "best_instruction",
                                    "path"]
_MEANED = ["reference_test", "reference_dev", "dev_score", "test_score", "queries", "candidates",
           "failed", "api_calls", "prompt_tokens", "completion_tokens", "tokens", "usd", "wall_s"]


@dataclass
class Run:
    """One run directory, read.

    Attributes:
        path: The directory.
        label: Its name in tables and plots.
        config: ``config.json`` (else the summary's copy, else empty).
        summary: ``summary.json``, or None mid-run before any task finished.
        history: The ``history.jsonl`` records, in tell order.
        live: A driver holds the run's lock right now.
        rows: One row per task (keys: :data:`FIELDS`), in task order.
    """

    path: Path
    label: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    live: bool = False
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def strategy(self) -> str:
        return str((self.summary or {}).get("strategy") or self.config.get("strategy") or "?")

    @property
    def budget(self) -> int | None:
        budget = (self.config.get("bo") or {}).get("budget")
        return budget if isinstance(budget, int) else None

    def records(self, task: str) -> list[dict[str, Any]]:
        return [r for r in self.history if r.get("task") == task]


@dataclass
class Report:
    """Run directories side by side.

    Attributes:
        runs: The runs, the first is the one the others are compared with.
        tasks: Every task of any run, in the order the runs name them.
        means: One mean row per run (``task`` is ``"mean"``), over its tasks.
    """

    runs: list[Run]
    tasks: list[str]
    means: list[dict[str, Any]]

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Task rows grouped by task: each task's row of every run that has it."""
        return [run.rows[t] for t in self.tasks for run in self.runs if t in run.rows]


def load_report(paths: Sequence[str | Path]) -> Report:
    """Read run directories (see :mod:`izray.reporting`) into a :class:`Report`.

    Raises:
        RunStateError: a path is not a run directory, or one of its files is damaged.
    """
    runs = [_load_run(Path(p)) for p in paths]
    for run, label in zip(runs, _labels(runs), strict=True):
        run.label = label
        for row in run.rows.values():
            row["run"] = label
    tasks = list(dict.fromkeys(t for run in runs for t in run.rows))
    first = runs[0]
    for run in runs[1:]:
        for task, row in run.rows.items():
            base = first.rows.get(task, {})
            row["diff_test"] = _diff(row.get("test_score"), base.get("test_score"))
            row["diff_dev"] = _diff(row.get("dev_score"), base.get("dev_score"))
    means = [_mean_row(run, first if i else None) for i, run in enumerate(runs)]
    return Report(runs, tasks, means)


def _load_run(path: Path) -> Run:
    if not path.is_dir() or not ((path / CONFIG).is_file() or (path / HISTORY).is_file()):
        raise RunStateError(f"{path} is not an izray run directory (no config.json or "
                            "history.jsonl); pass the --out directory of `izray run`")
    summary = _object(path / SUMMARY) if (path / SUMMARY).is_file() else None
    config = _object(path / CONFIG) if (path / CONFIG).is_file() else None
    run = Run(path, config=config or (summary or {}).get("config") or {}, summary=summary,
              history=_read_history(path / HISTORY), live=_locked(path / ".lock"))
    done = (summary or {}).get("tasks") or {}
    names = (run.config.get("tasks") or {}).get("names") or []
    tasks = [t for t in dict.fromkeys([*names, *done, *(r.get("task") for r in run.history)])
             if isinstance(t, str)]
    usage = (_ledger_usage(path / LEDGER) if any(not _finished(done.get(t)) for t in tasks)
             else None)
    for task in tasks:
        entry = done.get(task)
        row = (_summary_row(entry) if _finished(entry) else
               _live_row(run, task, None if usage is None else usage.get(task, (0, 0, 0))))
        row.update(task=task, path=str(path), diff_test=None, diff_dev=None)
        row["tokens"] = _add(row.get("prompt_tokens"), row.get("completion_tokens"))
        run.rows[task] = row
    return run


def _finished(entry: Any) -> bool:
    return isinstance(entry, dict) and bool(entry.get("finished", True))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunStateError(f"{path} is unreadable ({err}); restore it or pass another "
                            "run directory") from None


def _object(path: Path) -> dict[str, Any]:
    data = _read_json(path)
    if not isinstance(data, dict) or not all(isinstance(data.get(k, {}), dict)
                                             for k in ("tasks", "config", "bo", "evaluator")):
        raise RunStateError(f"{path} is not what izray writes (a JSON object with object "
                            "sections); restore it or pass another run directory")
    return data


def _read_history(path: Path) -> list[dict[str, Any]]:
    """The records; a torn last line (being appended right now) is left out."""
    if not path.is_file():
        return []
    out = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if not line.endswith("\n"):
                    break
                raise RunStateError(f"{path}:{lineno} is not a history record; the file was "
                                    "edited or damaged (`izray resume` rebuilds it)") from None
            if isinstance(rec, dict):
                out.append(rec)
    return out


def _locked(path: Path) -> bool:
    """Whether a driver holds the run's lock (probed without blocking, released at once)."""
    try:
        with open(path, "rb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError:
        pass
    return False


def _ledger_usage(path: Path) -> dict[str, tuple[int, int, int]] | None:
    """``{task: (calls, prompt tokens, completion tokens)}`` read-only from the ledger, None
    without a readable one."""
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=5.0)
        try:
            rows = db.execute("SELECT tag, SUM(attempts), SUM(prompt_tokens), "
                              "SUM(completion_tokens) FROM calls GROUP BY tag").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return None  # locked, a read-only directory beside a WAL: calls from history.jsonl
    return {str(t): (int(c or 0), int(p or 0), int(k or 0)) for t, c, p, k in rows}


def _summary_row(r: dict[str, Any]) -> dict[str, Any]:
    ref = _best_reference(r.get("references"))
    return {"strategy": r.get("strategy"), "metric": r.get("metric"), "status": "done",
            "reference_test": ref.get("test_score"), "reference_dev": ref.get("dev_score"),
            "dev_score": r.get("dev_score"), "test_score": r.get("test_score"),
            "queries": r.get("queries"), "candidates": r.get("candidates", r.get("queries")),
            "failed": r.get("failed_queries"), "api_calls": r.get("api_calls"),
            "prompt_tokens": r.get("prompt_tokens"),
            "completion_tokens": r.get("completion_tokens"), "usd": r.get("usd"),
            "stopped_by": _stopped_by(r.get("stopped"), r.get("converged")),
            "stopped": r.get("stopped") or r.get("converged"), "wall_s": r.get("wall_s"),
            "n_dev": r.get("n_dev"), "n_test": r.get("n_test"),
            "best_instruction": r.get("best_instruction")}


def _live_row(run: Run, task: str, usage: tuple[int, int, int] | None) -> dict[str, Any]:
    """A task not finished: rebuilt from its history, state and ledger."""
    recs = run.records(task)
    scored = [r for r in recs if r.get("dev_score") is not None]
    best = max(scored, key=lambda r: r["dev_score"], default={})
    state = _read_state(run.path / "state" / f"{task}.json")
    cfg_tasks = run.config.get("tasks") or {}
    if usage is None:
        usage = (sum(int(r.get("api_calls") or 0) for r in recs), None, None)
    done = bool(state.get("finished"))
    return {"strategy": state.get("strategy") or run.strategy,
            "metric": (cfg_tasks.get("metrics") or {}).get(task) or _default_metric(task),
            "status": "done" if done else "running" if run.live else "unfinished",
            **_ref_fields(_best_reference(state.get("references"))),
            "dev_score": best.get("dev_score"), "test_score": state.get("test_score"),
            "queries": sum(r.get("query") is not None for r in recs), "candidates": len(recs),
            "failed": sum(r.get("query") is not None and r.get("dev_score") is None
                          for r in recs),
            "api_calls": usage[0], "prompt_tokens": usage[1], "completion_tokens": usage[2],
            "usd": _usd(run.config, usage),
            "stopped_by": _stopped_by(state.get("stopped") or state.get("exhausted"), None,
                                      done),
            "stopped": state.get("stopped") or state.get("exhausted"),
            "wall_s": state.get("wall_s"), "n_dev": None, "n_test": None,
            "best_instruction": best.get("instruction")}


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    state = _read_json(path)
    return state if isinstance(state, dict) else {}


def _ref_fields(ref: dict[str, Any]) -> dict[str, Any]:
    return {"reference_test": ref.get("test_score"), "reference_dev": ref.get("dev_score")}


def _best_reference(refs: Any) -> dict[str, Any]:
    """The user's reference instruction with the best dev score (ties: the first)."""
    scored = [r for r in refs or [] if isinstance(r, dict) and r.get("dev_score") is not None]
    return max(scored, key=lambda r: r["dev_score"], default={})


def _default_metric(task: str) -> str | None:
    from izray.tasks.metrics import TASK_METRICS

    return TASK_METRICS.get(task)


def _usd(config: dict[str, Any], usage: tuple[int, int | None, int | None]) -> float | None:
    model = (config.get("evaluator") or {}).get("model") or "izray-embedded"
    price = (config.get("prices") or {}).get(model)
    if not isinstance(price, dict) or usage[1] is None or usage[2] is None:
        return None
    return (usage[1] * float(price.get("prompt", 0)) +
            usage[2] * float(price.get("completion", 0))) / 1e6


def _stopped_by(stopped: Any, converged: Any, done: bool = True) -> str | None:
    """Short reason: the cap (``caps.task.usd=0.5``), ``stop_at_max`` or ``budget``."""
    if stopped:
        return str(stopped).split(" ", 1)[0]
    if converged:
        return "stop_at_max"
    return "budget" if done else None


def _labels(runs: list[Run]) -> list[str]:
    """Strategies when they tell the runs apart, else the shortest distinct path tails."""
    if len(runs) > 1 and len({r.strategy for r in runs}) == len(runs):
        return [r.strategy for r in runs]
    parts = [r.path.resolve().parts for r in runs]
    labels = []
    for i, mine in enumerate(parts):
        others = [p for j, p in enumerate(parts) if j != i]
        depth = next((d for d in range(1, len(mine) + 1)
                      if all(p[-d:] != mine[-d:] for p in others)), None)
        labels.append(f"{i + 1}:{mine[-1]}" if depth is None  # the same directory twice
                      else "/".join(mine[-depth:]))
    return labels


def _mean_row(run: Run, first: Run | None) -> dict[str, Any]:
    rows = list(run.rows.values())
    out: dict[str, Any] = {k: None for k in FIELDS}
    out.update(task="mean", run=run.label, strategy=run.strategy, path=str(run.path),
               n_tasks=len(rows), n_tested=sum(r.get("test_score") is not None for r in rows))
    for key in _MEANED:
        vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        out[key] = sum(vals) / len(vals) if vals else None
    if first is not None:  # paired: over the tasks both runs have a value for
        for diff in ("diff_test", "diff_dev"):
            vals = [r[diff] for r in rows if r.get(diff) is not None]
            out[diff] = sum(vals) / len(vals) if vals else None
    statuses = {r["status"] for r in rows}
    out["status"] = "done" if statuses == {"done"} else "running" if run.live else "unfinished"
    return out


def _diff(a: Any, b: Any) -> float | None:
    return None if a is None or b is None else a - b


def _add(a: Any, b: Any) -> int | None:
    return None if a is None or b is None else a + b

