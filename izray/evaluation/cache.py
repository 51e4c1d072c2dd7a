"""A persistent response cache: no paid call is ever made twice.

Keyed by a sha256 over the endpoint, model, API kind, sampling settings and the exact
prompt; the value is the answer and its token usage. It is a sqlite file (in the run
directory by default), written by the driver only, in WAL mode so a crash loses at most the
call being written. A resumed or repeated run finds every answer it already paid for.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from izray.errors import RunStateError
from izray.evaluation.sqlite import connect

if TYPE_CHECKING:
    from izray.config import RunConfig


@dataclass(frozen=True)
class CachedAnswer:
    """A stored answer."""

    text: str
    prompt_tokens: int
    completion_tokens: int


def endpoint_settings(cfg: RunConfig) -> dict[str, Any]:
    """Everything besides the prompt that decides a black-box answer: the base of every cache
    key, the journal's and the detached evaluators' identity. The one place they are built.

    The endpoint is the URL without credentials, or ``embedded:MODEL`` for the embedded
    server (whose port changes every start). The API key is never part of it: rotating a key
    keeps every cached answer.

    Example:
        >>> from izray.config import load_config
        >>> endpoint_settings(load_config(None, ["evaluator.base_url=https://u:p@x.io/v1",
        ...                                      "evaluator.model=m"]))["endpoint"]
        'https://***@x.io/v1'
    """
    from izray import _constants as C
    from izray.config import redact_url
    from izray.evaluation.templates import resolve_api

    ev = cfg.evaluator
    return {"endpoint": f"embedded:{cfg.server.model}" if ev.embedded else redact_url(
                ev.base_url or ""),
            "model": C.EMBEDDED_MODEL_NAME if ev.embedded else ev.model,
            "api": resolve_api(ev), "temperature": ev.temperature, "max_tokens": ev.max_tokens,
            "stop": list(ev.stop)}


def cache_key(settings: Mapping[str, Any], prompt: str) -> str:
    """Stable key for ``prompt`` under black-box ``settings`` (no secrets in either)."""
    blob = json.dumps({"settings": dict(settings), "prompt": prompt}, sort_keys=True,
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """sqlite-backed ``key -> answer`` map.

    Args:
        path: The database file (created with its directory if missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = connect(self.path, "the response cache")  # WAL, or the rollback journal on NFS
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, text "
                             "TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER, "
                             "t REAL)")
        except sqlite3.OperationalError as err:  # a full disk, a read-only or locked file
            raise RunStateError(f"the response cache {self.path} cannot be written ({err}); free space "
                                "on its file system or fix its permissions") from None
        except sqlite3.DatabaseError as err:
            raise RunStateError(f"the response cache {self.path} cannot be opened as a database "
                                f"({err}); restore it, or move it aside (its answers would be "
                                "paid again) or fix evaluator.cache_path") from None

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedAnswer]:
        """The stored answers among ``keys`` (a row whose text is not text, as an older izray
        could store from a malformed 200, counts as absent and is asked again)."""
        keys = list(keys)
        out: dict[str, CachedAnswer] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = self._db.execute(
                f"SELECT key, text, prompt_tokens, completion_tokens FROM answers WHERE key IN "
                f"({','.join('?' * len(chunk))})", chunk).fetchall()
            for key, text, pt, ct in rows:
                if not isinstance(text, str):
                    continue
                out[key] = CachedAnswer(text, int(pt or 0), int(ct or 0))
        return out

    def put_many(self, items: Mapping[str, CachedAnswer]) -> None:
        """Store answers (one transaction)."""
        if not items:
            return
        now = time.time()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?)",
                [(k, a.text, a.prompt_tokens, a.completion_tokens, now) for k, a in items.items()])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        self._db.close()
