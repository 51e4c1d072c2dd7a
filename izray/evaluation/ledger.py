"""The call ledger: every black-box call izray paid for, by task, durable across crashes.

Two writers, one truth:

* evaluator actors append each call's outcome to their own JSON-lines journal in
  ``OUT/journal/`` the moment it completes (so a call that finishes while the driver is dead
  is not lost: its answer and its cost are on disk);
* the driver records the outcomes it receives in ``OUT/ledger.sqlite``.

Every outcome carries a unique call id, so :meth:`Ledger.ingest_journals` can fold the
journals into the ledger (and their answers into the response cache) without counting a
call twice. Usage per task is then a query over the ledger.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from izray.errors import RunStateError
from izray.evaluation.sqlite import connect


@dataclass
class Usage:
    """Calls (HTTP requests, retries included) and billed tokens."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


@dataclass(frozen=True)
class CallRecord:
    """One call's outcome as journaled and ledgered."""

    id: str
    tag: str
    key: str
    ok: bool
    text: str | None
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict) -> CallRecord:
        """A record from its JSON line. An ``ok`` record whose text is not text (an older
        izray journaled malformed 200s) stays a paid call but no answer: it is asked again."""
        text = d.get("text")
        ok = bool(d["ok"]) and isinstance(text, str)
        error = d.get("error") if ok or not d["ok"] else "the answer was not text"
        return cls(str(d["id"]), str(d.get("tag", "")), str(d["key"]), ok,
                   text if isinstance(text, str) else None, int(d.get("prompt_tokens", 0)),
                   int(d.get("completion_tokens", 0)), int(d.get("attempts", 0)), error)


class Journal:
    """Append-only JSON lines, flushed and fsynced per record (one file per writer).

    Outcomes go to ``PATH`` (``*.jsonl``); the ids of calls about to be sent go to
    ``PATH.sent`` (``{"id", "tag", "key"}`` lines), so that a call sent but never journaled
    (its process died with the answer in flight) can be counted: :func:`lost_calls`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - long-lived
        self._sent = open(self.path.with_name(self.path.name + SENT_SUFFIX), "a",  # noqa: SIM115
                          encoding="utf-8")

    def append(self, record: CallRecord) -> None:
        self._fh.write(record.to_json() + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def sent(self, call_id: str, tag: str, key: str) -> None:
        """Record that a request of call ``call_id`` is about to leave (one line per attempt:
        a call lost with its process counts every request it made)."""
        self._sent.write(json.dumps({"id": call_id, "tag": tag, "key": key}) + "\n")
        self._sent.flush()
        os.fsync(self._sent.fileno())

    def close(self) -> None:
        self._fh.close()
        self._sent.close()


SENT_SUFFIX = ".sent"
"""Suffix of a journal's sent-calls file (``eval-ID.jsonl.sent``)."""

LOST_ERROR = "lost in flight: its process died before the answer was journaled"
"""``error`` of the ledger record of a call sent but never journaled."""


def lost_calls(directory: str | Path) -> list[CallRecord]:
    """Calls sent but never journaled in ``directory`` (their writer died mid-call).

    Call this when no writer of ``directory`` is still running (every call it sent has been
    journaled by then, or never will be). Each lost call was sent at least once and may have
    been paid; its answer is gone. Returned as failed records with one attempt per request it
    made (a sent line each), so that the ledger counts every request; tokens are unknown (0).
    """
    directory = Path(directory)
    done = {r.id for r in read_journals(directory)}
    lost: dict[str, CallRecord] = {}
    for path in sorted(directory.glob("*.jsonl" + SENT_SUFFIX)):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    d = json.loads(line)
                    call_id, tag, key = str(d["id"]), str(d.get("tag", "")), str(d["key"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a write cut short by the crash
                if call_id in done:
                    continue
                prev = lost.get(call_id)
                lost[call_id] = CallRecord(call_id, tag, key, False, None, 0, 0,
                                           1 + (prev.attempts if prev else 0), LOST_ERROR)
    return list(lost.values())


def read_journals(directory: str | Path) -> Iterator[CallRecord]:
    """Every record in ``directory/*.jsonl``.

    A torn last line (no newline: a write cut short by a crash) is skipped. A complete line
    that is not a record is not a crash artifact (each process appends to its own file, and
    never after a torn write).

    Raises:
        RunStateError: a complete line is not a journal record (names file and line).
    """
    for path in sorted(Path(directory).glob("*.jsonl")):
        with open(path, encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                try:
                    yield CallRecord.from_dict(json.loads(line))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                    if not line.endswith("\n"):
                        continue  # a write cut short by a crash
                    raise RunStateError(
                        f"{path}:{lineno} is not a journal record ({type(err).__name__}: "
                        f"{str(err)[:80]}); the journal was edited or damaged: restore it, or "
                        "move the file aside (its answers would be paid again)") from None


class Ledger:
    """sqlite table of call records, keyed by call id.

    Args:
        path: The database file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = connect(self.path, "the call ledger")  # WAL, or the rollback journal on NFS
            self._db.execute("CREATE TABLE IF NOT EXISTS calls (id TEXT PRIMARY KEY, tag TEXT, "
                             "key TEXT, ok INTEGER, attempts INTEGER, prompt_tokens INTEGER, "
                             "completion_tokens INTEGER, t REAL)")
        except sqlite3.OperationalError as err:  # a full disk, a read-only or locked file
            raise RunStateError(f"the call ledger {self.path} cannot be written ({err}); free space "
                                "on its file system or fix its permissions") from None
        except sqlite3.DatabaseError as err:
            raise RunStateError(f"the call ledger {self.path} cannot be opened as a database "
                                f"({err}); restore it, or move it aside: the journals rebuild "
                                "what evaluators recorded, spend from older drivers is lost"
                                ) from None

    def record(self, records: Iterable[CallRecord]) -> int:
        """Store records not stored yet; returns how many were new."""
        rows = [(r.id, r.tag, r.key, int(r.ok), r.attempts, r.prompt_tokens, r.completion_tokens,
                 time.time()) for r in records]
        if not rows:
            return 0
        before = self._db.total_changes
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                 rows)
        return self._db.total_changes - before

    def usage_by_tag(self) -> dict[str, Usage]:
        out = {}
        for tag, calls, pt, ct in self._db.execute(
                "SELECT tag, SUM(attempts), SUM(prompt_tokens), SUM(completion_tokens) FROM calls "
                "GROUP BY tag"):
            out[tag] = Usage(int(calls or 0), int(pt or 0), int(ct or 0))
        return out

    def outcomes_by_tag(self) -> dict[str, tuple[int, int, int]]:
        """``tag -> (calls answered, calls failed, HTTP requests)`` (requests include
        retries: ``requests - answered - failed`` are attempts beyond each call's first)."""
        return {tag: (int(ok or 0), int(n or 0) - int(ok or 0), int(attempts or 0))
                for tag, ok, n, attempts in self._db.execute(
                    "SELECT tag, SUM(ok), COUNT(*), SUM(attempts) FROM calls GROUP BY tag")}

    def total(self) -> Usage:
        total = Usage()
        for u in self.usage_by_tag().values():
            total.add(u)
        return total

    def close(self) -> None:
        self._db.close()
