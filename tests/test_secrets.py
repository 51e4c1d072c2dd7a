"""The API key and URL credentials never reach the run directory, the console or the logs.

Each run uses the simulated generator against the black-box simulator requiring a key. After
the run every file under the run directory is searched byte for byte, and so are stdout,
stderr (the CLI's log handler, at DEBUG with ``-v``) and every log record.

How the key reaches the evaluator actors matters for the test: an ``EvaluatorActor`` reads
the key from *its own* environment or key file (``izray.runtime.actors.read_api_key``), so
the key never travels through Ray. The in-process tests share the session's ``ray_local``
cluster, whose worker processes were started before any test could set ``OPENAI_API_KEY``
and never see a variable set later (monkeypatch changes only this process). So:

* the environment-variable route runs the real ``izray`` command in a subprocess with the
  key in its environment, as a user does; that process starts its own Ray cluster, whose
  workers inherit the variable;
* the in-process run gives the key through ``evaluator.api_key_file``, which the actors read
  on this (single) node.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from izray import cli
from izray.cli import main

#: A key no test name, path or fixture could contain by accident.
SECRET = f"sk-izray-{secrets.token_hex(16)}"
#: ``bo.stop_at_max=false``: the run must reach a BO proposal (the ``izray`` DEBUG record the
#: log search needs) even when an initial instruction already scores the maximum.
SIM = ("generator.backend=sim", "evaluator.model=sim-model", "bo.budget=6", "bo.n_init=4",
       "bo.batch_size=2", "bo.stop_at_max=false", "tasks.n_test=5", "tasks.n_dev=10", "generator.max_new_tokens=8")


def sets(*items: str) -> list[str]:
    out = []
    for item in items:
        out += ["--set", item]
    return out


def files_containing(root: Path, needle: str) -> list[str]:
    """Every file under ``root`` whose bytes contain ``needle``."""
    assert root.is_dir()
    hits = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and needle.encode() in path.read_bytes():
            hits.append(str(path))
    return hits


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def ray_session_logs() -> Path | None:
    """The ``ray_local`` session's log directory (actors' stdout/stderr), if Ray says."""
    try:
        from ray._private import worker

        return Path(worker._global_node.get_logs_dir_path())
    except Exception:  # noqa: BLE001 - a private API: the test then skips this part
        return None


@pytest.fixture()
def izray_records(monkeypatch, caplog):
    """Every log record of the run, at DEBUG, including the ``izray`` logger's own.

    The CLI gives the ``izray`` logger its own stderr handler and stops propagation, so
    caplog's handler is added to it right after the CLI sets it up.
    """
    setup = cli._setup_logging

    def setup_and_capture(verbose: bool) -> None:
        setup(verbose)
        logging.getLogger("izray").addHandler(caplog.handler)

    monkeypatch.setattr(cli, "_setup_logging", setup_and_capture)
    caplog.set_level(logging.DEBUG)
    yield caplog
    logging.getLogger("izray").removeHandler(caplog.handler)


def record_texts(caplog) -> str:
    return "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)


def test_key_file_never_leaks(ray_local, simulator, tmp_path, monkeypatch, capsys,
                              izray_records):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    sim = simulator(api_key=SECRET)
    key_file = tmp_path / "keys" / "openai.key"
    key_file.parent.mkdir()
    key_file.write_text(SECRET + "\n")
    out = tmp_path / "run"
    ray_logs = ray_session_logs()
    code = main(["run", "-v", "--tasks", "plural", "--out", str(out),
                 *sets(*SIM, f"evaluator.base_url={sim.base_url}",
                       f"evaluator.api_key_file={key_file}")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # The key was used: every request was authorized.
    assert sim.stats.unauthorized == 0
    assert sim.stats.requests > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"]["plural"]["finished"] is True
    assert sim.stats.requests == summary["usage"]["api_calls"]
    # The run wrote what it writes (so the search below has something to search).
    names = {p.name for p in all_files(out)}
    assert {"config.json", "summary.json", "history.jsonl", "cache.sqlite", "driver.log"} <= names
    assert json.loads((out / "config.json").read_text())["evaluator"]["api_key_file"] == str(
        key_file)
    # ... and the key is nowhere.
    assert files_containing(out, SECRET) == []
    assert SECRET not in captured.out and SECRET not in captured.err
    assert izray_records.records, "no log records were captured"
    assert any(r.name == "izray" and r.levelno == logging.DEBUG for r in izray_records.records)
    assert SECRET not in record_texts(izray_records)
    if ray_logs is not None and ray_logs.is_dir():  # the actors' own logs
        assert files_containing(ray_logs, SECRET) == []


def test_key_from_environment_never_leaks(simulator, tmp_path):
    """``OPENAI_API_KEY`` in the environment of the real ``izray`` process (own Ray cluster)."""
    sim = simulator(api_key=SECRET)
    out = tmp_path / "run"
    env = dict(os.environ, OPENAI_API_KEY=SECRET, RAY_DEDUP_LOGS="0")
    env.pop("RAY_ADDRESS", None)  # its own local cluster, started with the key in its env
    env.pop("IZRAY_DATA_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "izray.cli", "run", "-v", "--tasks", "plural", "--out", str(out),
         *sets(*SIM, f"evaluator.base_url={sim.base_url}")],
        check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sim.stats.unauthorized == 0
    assert sim.stats.requests > 0
    summary = json.loads((out / "summary.json").read_text())
    assert sim.stats.requests == summary["usage"]["api_calls"]
    assert json.loads((out / "config.json").read_text())["evaluator"]["api_key_env"] == (
        "OPENAI_API_KEY")
    assert files_containing(out, SECRET) == []
    assert "results:" in proc.stdout
    assert SECRET not in proc.stdout and SECRET not in proc.stderr


# ------------------------------------------------------------------ credentials in the URL


@pytest.fixture(scope="module")
def url_run(ray_local, tmp_path_factory):
    """One run against ``http://user:SECRET@127.0.0.1:PORT/v1`` (the simulator ignores the
    userinfo), with its console output captured."""
    from izray.testing.simulator import SimConfig, start_in_thread

    sim = start_in_thread(SimConfig())
    out = tmp_path_factory.mktemp("url") / "run"
    url = f"http://user:{SECRET}@127.0.0.1:{sim.port}/v1"
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["run", "-v", "--tasks", "plural", "--out", str(out),
                         *sets(*SIM, f"evaluator.base_url={url}")])
        yield {"code": code, "out": out, "sim": sim, "port": sim.port,
               "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}
    finally:
        sim.stop()


def test_url_credentials_are_not_saved(url_run):
    assert url_run["code"] == 0, url_run["stderr"][-3000:]
    out = url_run["out"]
    assert url_run["sim"].stats.requests > 0
    expected = f"http://***@127.0.0.1:{url_run['port']}/v1"
    config = json.loads((out / "config.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert config["evaluator"]["base_url"] == expected
    assert summary["config"]["evaluator"]["base_url"] == expected
    assert summary["tasks"]["plural"]["finished"] is True
    assert SECRET not in (out / "config.json").read_text()
    assert SECRET not in (out / "summary.json").read_text()
    assert files_containing(out, SECRET) == []
    assert SECRET not in url_run["stdout"]


def test_url_credentials_are_not_logged(url_run):
    assert url_run["code"] == 0
    assert "***@127.0.0.1" in url_run["stderr"]  # the endpoint is logged, redacted
    leaks = [line for line in url_run["stderr"].splitlines() if SECRET in line]
    assert leaks == []


def test_endpoint_errors_do_not_show_url_credentials(ray_local, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--tasks", "plural", "--out", str(out),
                 *sets(*SIM, f"evaluator.base_url=http://user:{SECRET}@127.0.0.1:9/v1")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines()[-1].startswith("izray: error: cannot reach http://***@127.0.0.1:9/v1")
    assert SECRET not in err
    assert not out.exists()
