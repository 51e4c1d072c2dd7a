"""Tests of izray.tasks.fetch against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import pytest

from izray.errors import TaskError
from izray.tasks import (
    ALL_24,
    DEFAULT_URL,
    fetch_instruction_induction,
    list_tasks,
    load_task,
)

TASKS = ["antonyms", "cause_and_effect"]


class Server:
    """A static file server over a temp copy of two tasks laid out like the GitHub tree."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        requests = self.requests

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                requests.append(self.path)

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/raw"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def server(
    tmp_path: Path, ii_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Server]:
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    root = tmp_path / "served"
    for split in ("induce", "execute"):
        (root / "data" / "raw" / split).mkdir(parents=True)
        for task in TASKS:
            shutil.copy(
                ii_data_dir / split / f"{task}.json", root / "data" / "raw" / split
            )
    (root / "data" / "raw" / "induce" / "broken.json").write_text(
        "<html>not json</html>"
    )
    (root / "data" / "raw" / "execute" / "broken.json").write_text('{"examples": {}}')
    with Server(root) as srv:
        yield srv


def one_line(err: pytest.ExceptionInfo[TaskError]) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


def test_fetch_downloads_validates_and_writes(
    server: Server, tmp_path: Path, ii_data_dir: Path
) -> None:
    dest = tmp_path / "data"
    lines: list[str] = []
    paths = fetch_instruction_induction(
        dest, base_url=server.base_url, tasks=TASKS, timeout=10, progress=lines.append
    )
    assert paths == [
        dest / s / f"{t}.json" for t in TASKS for s in ("induce", "execute")
    ]
    for path in paths:
        original = ii_data_dir / path.parent.name / path.name
        assert path.read_bytes() == original.read_bytes()
    assert sorted(server.requests) == sorted(
        f"/data/raw/{s}/{t}.json" for t in TASKS for s in ("induce", "execute")
    )
    assert len(lines) == 4 and all(line.startswith("downloaded") for line in lines)
    readme = (dest / "README.md").read_text()
    assert "Apache-2.0" in readme and "Honovich" in readme and server.base_url in readme
    leftovers = [p for p in dest.rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    # The result is a usable data directory.
    assert {
        i.name for i in list_tasks(dest) if i.kind == "instruction_induction"
    } == set(TASKS)
    assert len(load_task("cause_and_effect", dest).pool) == 26


def test_fetch_skips_valid_files_and_replaces_invalid_ones(
    server: Server, tmp_path: Path
) -> None:
    dest = tmp_path / "data"
    fetch_instruction_induction(
        dest, base_url=server.base_url + "/", tasks=TASKS, timeout=10
    )
    n_requests = len(server.requests)
    lines: list[str] = []
    fetch_instruction_induction(
        dest, base_url=server.base_url, tasks=TASKS, timeout=10, progress=lines.append
    )
    assert len(server.requests) == n_requests  # nothing downloaded again
    assert all(line.startswith("present") for line in lines)

    corrupt = dest / "induce" / "antonyms.json"
    corrupt.write_text("{truncated")
    fetch_instruction_induction(dest, base_url=server.base_url, tasks=TASKS, timeout=10)
    assert server.requests[n_requests:] == ["/data/raw/induce/antonyms.json"]
    assert len(load_task("antonyms", dest).pool) == 2592


def test_fetch_404(server: Server, tmp_path: Path) -> None:
    with pytest.raises(TaskError) as info:
        fetch_instruction_induction(
            tmp_path / "data",
            base_url=server.base_url,
            tasks=["no_such_task"],
            timeout=10,
        )
    message = one_line(info)
    assert "HTTP 404" in message
    assert f"{server.base_url}/induce/no_such_task.json" in message
    assert not (tmp_path / "data" / "induce" / "no_such_task.json").exists()


def test_fetch_rejects_invalid_content(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    with pytest.raises(TaskError) as info:
        fetch_instruction_induction(
            dest, base_url=server.base_url, tasks=["broken"], timeout=10
        )
    message = one_line(info)
    assert (
        "broken.json is not an Instruction Induction task file: not valid JSON"
        in message
    )
    assert list((dest / "induce").iterdir()) == []  # nothing written, no temp file left


def test_fetch_rejects_empty_examples(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    (dest / "induce").mkdir(parents=True)
    shutil.copy(
        server.root / "data/raw/induce/antonyms.json", dest / "induce" / "broken.json"
    )
    with pytest.raises(TaskError) as info:
        fetch_instruction_induction(
            dest, base_url=server.base_url, tasks=["broken"], timeout=10
        )
    assert 'an empty "examples" object' in one_line(info)
    assert "/execute/broken.json" in one_line(info)


def test_fetch_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    with (
        socket.socket() as sock
    ):  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data/raw"
    with pytest.raises(TaskError) as info:
        fetch_instruction_induction(
            tmp_path / "d", base_url=url, tasks=["antonyms"], timeout=5
        )
    message = one_line(info)
    assert f"cannot fetch {url}/induce/antonyms.json" in message
    assert "network" in message


@pytest.mark.parametrize("tasks", [[], ["../etc"], ["a/b"]])
def test_fetch_rejects_bad_task_lists(tasks: list[str], tmp_path: Path) -> None:
    with pytest.raises(TaskError) as info:
        fetch_instruction_induction(
            tmp_path, base_url="http://127.0.0.1:9", tasks=tasks
        )
    assert "task" in one_line(info)
    assert not (tmp_path / "README.md").exists()


def test_defaults() -> None:
    assert DEFAULT_URL == (
        "https://raw.githubusercontent.com/orhonovich/instruction-induction/main/data/raw"
    )
    assert len(ALL_24) == len(set(ALL_24)) == 24
