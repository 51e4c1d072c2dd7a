"""The run directory: what a run writes, atomically, and how results are shown.

Layout of ``OUT/``::

    config.json        the run's configuration (no secrets)
    summary.json       per-task results (contract: see README "Outputs")
    history.jsonl      one line per evaluated candidate
    cache.sqlite       every paid black-box answer (pay once)
    state/TASK.json    BO state per task (observations, pending, RNG)
    state/TASK.projection.npz   the task's random projection
    logs/              logs of the embedded model server
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from izray.errors import RunStateError

SUMMARY = "summary.json"
HISTORY = "history.jsonl"
CONFIG = "config.json"
CACHE = "cache.sqlite"


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON via a temp file + fsync + rename: a crash leaves the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, ensure_ascii=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunDir:
    """Creates and writes one run directory.

    Args:
        path: The directory. It must not exist, or be empty.

    Raises:
        RunStateError: it holds files, or cannot be created or written.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise RunStateError(f"output directory {self.path} is not empty; choose another --out")
        created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            if created:
                _remove_empty(self.path)
            raise RunStateError(f"output directory {self.path} is not writable "
                                f"({err.strerror}); choose another --out") from None
        (self.path / "state").mkdir(exist_ok=True)
        (self.path / "logs").mkdir(exist_ok=True)
        self._history = open(self.path / HISTORY, "a", encoding="utf-8")  # noqa: SIM115

    def write_config(self, config: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / CONFIG, config)

    def append_history(self, record: Mapping[str, Any]) -> None:
        """Append one candidate's line and flush it to disk."""
        self._history.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._history.flush()
        os.fsync(self._history.fileno())

    def write_state(self, task: str, state: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / "state" / f"{task}.json", state)

    def projection_path(self, task: str) -> Path:
        return self.path / "state" / f"{task}.projection.npz"

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / SUMMARY, summary)

    def close(self) -> None:
        self._history.close()


def _remove_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def format_results(summary: Mapping[str, Any]) -> str:
    """A readable table of each task's best instruction and scores."""
    lines = []
    for name, r in summary["tasks"].items():
        test = r.get("test_score")
        dev = r.get("dev_score")
        lines.append(f"{name}")
        lines.append(f"  best instruction: {r.get('best_instruction') or '(none)'}")
        lines.append(f"  dev score {_fmt(dev)}   test score {_fmt(test)}   queries {r['queries']}"
                     f"   API calls {r['api_calls']}   tokens {r['prompt_tokens']}+"
                     f"{r['completion_tokens']}   {r['wall_s']:.0f} s")
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
