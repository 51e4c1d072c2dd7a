"""The run directory: what a run writes, atomically, and how results are shown.

Layout of ``OUT/``::

    config.json        the run's configuration (no secrets)
    summary.json       per-task results (contract: see README "Outputs")
    history.jsonl      one line per evaluated candidate
    cache.sqlite       every paid black-box answer (pay once)
    ledger.sqlite      every paid call, by task (usage and cost)
    journal/           evaluator actors' call journals (answers that outlive a crash)
    state/TASK.json    per task: BO state (observations, pending, RNG), history records,
                       test result; rewritten atomically after every observation
    state/TASK.projection.npz   the task's random projection
    logs/              driver.log (the driver's log, appended by resumes) and the
                       embedded model server's log
    .lock              held by the driver working on the run
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from izray.errors import RunStateError
from izray.testing.crash import crash_point

SUMMARY = "summary.json"
HISTORY = "history.jsonl"
CONFIG = "config.json"
CACHE = "cache.sqlite"
LEDGER = "ledger.sqlite"
JOURNAL_MARK = ".run-dir"
"""File in ``journal/`` written by the driver; an evaluator that cannot see it would journal
its calls somewhere no resume reads (a node without the run's volume)."""


def _umask() -> int:
    """The process umask, read without changing it (Linux ``/proc``), else set-and-restore."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON via a temp file + fsync + rename: a crash leaves the old or the new file.
    The file gets the mode a plain ``open`` would give it (``0o666`` minus the umask), not
    ``mkstemp``'s 0600 nor a fixed 0644: an operator's ``umask 077`` keeps results private."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, ensure_ascii=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunDir:
    """Creates (or reopens) and writes one run directory.

    Args:
        path: The directory. A new run needs it missing or empty.
        resume: Reopen an existing run instead.

    Raises:
        RunStateError: not empty (new run) / not a run (resume), not writable, or in use by
            another izray process.
    """

    def __init__(self, path: str | Path, resume: bool = False) -> None:
        self.path = Path(path)
        if resume:
            if not (self.path / CONFIG).is_file() or not (self.path / "state").is_dir():
                raise RunStateError(f"{self.path} is not an izray run directory (no config.json "
                                    "and state/); `izray run --out DIR` creates one")
        elif self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise RunStateError(f"output directory {self.path} is not empty; choose another --out"
                                " (or `izray resume` it)")
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
        self._lock = open(self.path / ".lock", "a+")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RunStateError(f"{self.path} is in use by another izray process") from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(f"{os.getpid()}\n")
        self._lock.flush()
        for sub in ("state", "logs", "journal"):
            (self.path / sub).mkdir(exist_ok=True)
        mark = self.journal_dir / JOURNAL_MARK  # evaluators check they see this very directory
        if not mark.is_file():
            mark.write_text(str(self.path.resolve()) + "\n")
        self._history = open(self.path / HISTORY, "a", encoding="utf-8")  # noqa: SIM115

    @property
    def journal_dir(self) -> Path:
        return self.path / "journal"

    def write_config(self, config: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / CONFIG, config)

    def append_history(self, record: Mapping[str, Any]) -> None:
        """Append one candidate's line and flush it to disk."""
        self._history.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._history.flush()
        os.fsync(self._history.fileno())

    def rewrite_history(self, records: list[Mapping[str, Any]]) -> None:
        """Replace history.jsonl with ``records`` (atomically): used when resuming."""
        self._history.close()
        tmp = self.path / f".{HISTORY}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path / HISTORY)
        self._history = open(self.path / HISTORY, "a", encoding="utf-8")  # noqa: SIM115

    def write_state(self, task: str, state: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / "state" / f"{task}.json", state)
        crash_point("state")

    def read_state(self, task: str) -> dict[str, Any] | None:
        path = self.path / "state" / f"{task}.json"
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RunStateError(f"{path} is unreadable ({err}); the run cannot be resumed") from None
        if not isinstance(state, dict):
            raise RunStateError(f"{path} is not a state file (a JSON {type(state).__name__}, not "
                                "an object); restore it from a backup or start a new run")
        return state

    def projection_path(self, task: str) -> Path:
        return self.path / "state" / f"{task}.projection.npz"

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / SUMMARY, summary)

    def close(self) -> None:
        self._history.close()
        self._lock.close()


def _remove_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def format_results(summary: Mapping[str, Any]) -> str:
    """A readable table of each task's best instruction and scores, beside any references."""
    lines = []
    for name, r in summary["tasks"].items():
        test = r.get("test_score")
        dev = r.get("dev_score")
        lines.append(f"{name}  ({r.get('strategy', 'instructzero')})")
        lines.append(f"  best instruction: {r.get('best_instruction') or '(none)'}")
        lines.append(f"  dev score {_fmt(dev)}   test score {_fmt(test)}   queries {r['queries']}"
                     f" ({r.get('candidates', r['queries'])} candidates)   API calls "
                     f"{r['api_calls']}   tokens {r['prompt_tokens']}+{r['completion_tokens']}"
                     f"   {r['wall_s']:.0f} s"
                     + ("" if r.get("usd") is None else f"   ${r['usd']:.4f}"))
        for ref in r.get("references") or []:
            if ref.get("dev_score") is None:
                lines.append(f"  yours: {ref['instruction']!r}: {ref.get('error') or 'n/a'}")
                continue
            lines.append(f"  yours {_fmt(ref.get('test_score'))} -> izray {_fmt(test)} on test"
                         f" (dev {_fmt(ref['dev_score'])} -> {_fmt(dev)}): {ref['instruction']!r}")
        if r.get("stopped"):
            lines.append(f"  stopped: {r['stopped']}")
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
