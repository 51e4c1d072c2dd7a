"""`izray tasks` and `izray data fetch` through the command line."""

from __future__ import annotations

import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from izray.cli import main


def test_tasks_lists_builtin_and_shared(ii_data_dir, capsys):
    assert main(["tasks", "--data-dir", str(ii_data_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    names = {line.split()[0] for line in out[1:]}
    assert {"larger_number", "plural", "antonyms", "informal_to_formal"} <= names
    assert len(names) == 24 + 8
    row = next(line for line in out if line.startswith("informal_to_formal"))
    assert "f1" in row and "15" in row


def test_tasks_with_missing_data_dir_is_one_line_error(tmp_path, capsys):
    assert main(["tasks", "--data-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("izray: error:")


def test_data_fetch_from_a_mirror(tmp_path, ii_data_dir, capsys):
    root = tmp_path / "mirror" / "data" / "raw"
    for split in ("induce", "execute"):
        (root / split).mkdir(parents=True)
        shutil.copy(ii_data_dir / split / "sum.json", root / split / "sum.json")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "mirror"))
    handler.log_message = lambda *a, **k: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/data/raw"
        dest = tmp_path / "dl"
        assert main(["data", "fetch", str(dest), "--url", url, "--tasks", "sum"]) == 0
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (dest / "induce" / "sum.json").read_bytes() == (ii_data_dir / "induce" / "sum.json").read_bytes()
    assert "IZRAY_DATA_DIR" in capsys.readouterr().out
    assert main(["tasks", "--data-dir", str(dest)]) == 0
    assert "sum" in capsys.readouterr().out


def test_a_failed_new_run_keeps_its_directory_once_anything_was_paid(tmp_path):
    """A run stopped before its first query (Ctrl-C, a quota error) may already have paid
    answers in its cache, ledger or journal: those must survive the cleanup."""
    from izray import app
    from izray.evaluation.cache import CachedAnswer, ResponseCache
    from izray.evaluation.ledger import CallRecord, Journal, Ledger

    empty = tmp_path / "empty"
    (empty / "journal").mkdir(parents=True)
    (empty / "config.json").write_text("{}")
    Ledger(empty / "ledger.sqlite").close()  # created at start, no call in it
    assert app._nothing_recorded(empty)

    paid = CallRecord("c1", "plural", "k", True, "cats", 10, 1, 1)
    ledgered = tmp_path / "ledgered"
    Ledger(ledgered / "ledger.sqlite").record([paid])
    cached = tmp_path / "cached"
    cached.mkdir()
    cache = ResponseCache(cached / "cache.sqlite")
    cache.put_many({"k": CachedAnswer("cats", 10, 1)})
    cache.close()
    journaled = tmp_path / "journaled"
    journal = Journal(journaled / "journal" / "w.jsonl")
    journal.append(paid)
    journal.close()
    for out in (ledgered, cached, journaled):
        assert not app._nothing_recorded(out), out.name
