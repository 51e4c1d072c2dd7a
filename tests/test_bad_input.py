"""Bad input through the real command line (``izray.cli.main``), one table.

Every case must: exit 2; print exactly one ``izray: error: ...`` line to stderr, naming the
problem; and leave no partial garbage (the ``--out`` directory does not exist afterwards, and
directories that existed before, e.g. a finished run being resumed, are byte-for-byte
unchanged). Cases that reach the endpoint check need Ray; they use the simulated generator, so
they fail within seconds at the check, before any candidate is generated.

For every case that fails before a run starts, stderr is that one line and nothing else. The
few cases marked ``starts`` fail while the pools come up (endpoint, key, model checks, the
generator's model path), after the CLI has logged its progress lines ("izray: 1 task(s) ...",
"starting 1 sim generator actor(s) ..."); for them the error must be the last line and every
other line one of the CLI's own timestamped log lines (no traceback, no Ray output).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from izray.cli import main

#: ``--set`` arguments that make a run fast and model-free (simulated generator).
SIM = ("generator.backend=sim", "evaluator.model=sim-model", "bo.budget=4", "bo.n_init=2",
       "bo.batch_size=2", "tasks.n_test=5", "generator.max_new_tokens=8")


#: A line of the CLI's own log (``_setup_logging``): (date,) time, then the message.
PROGRESS = re.compile(r"(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d \S")
#: A line Ray's log monitor forwards from an actor of the (shared) test cluster.
FORWARDED = re.compile(r"(\x1b\[\d+m)?\(\w+ pid=\d+(, ip=[\d.]+)?\)")


def sets(*items: str) -> list[str]:
    out = []
    for item in items:
        out += ["--set", item]
    return out


def ii_file(path: Path, examples: list[dict]) -> None:
    """An Instruction Induction JSON file with ``examples``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"metadata": {"num_examples": len(examples)},
            "examples": {str(i + 1): ex for i, ex in enumerate(examples)}}
    path.write_text(json.dumps(data))


def ii_task(root: Path, n: int = 40, induce: str | None = None) -> Path:
    """A data directory with task ``x`` (``induce/x.json``, ``execute/x.json``)."""
    examples = [{"input": f"word{i}", "output": f"word{i}s"} for i in range(n)]
    ii_file(root / "induce" / "x.json", examples)
    ii_file(root / "execute" / "x.json", examples[:10])
    if induce is not None:
        (root / "induce" / "x.json").write_text(induce)
    return root


def snapshot(path: Path):
    """What is at ``path``: ``None``, a file's hash, or every entry of a directory tree."""
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_file():
        return ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    entries = []
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        if p.is_file():
            entries.append((rel, "file", hashlib.sha256(p.read_bytes()).hexdigest()))
        else:
            entries.append((rel, "dir", None))
    return ("dir", tuple(entries))


@dataclass
class Ctx:
    """What a case's ``build`` gets: scratch space and lazily started services."""

    tmp: Path
    request: pytest.FixtureRequest
    monkeypatch: pytest.MonkeyPatch
    out: Path = field(init=False)
    watch: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out = self.tmp / "out"
        self.watch = [self.out]

    def sim(self, **kwargs):
        self.request.getfixturevalue("ray_local")
        return self.request.getfixturevalue("simulator")(**kwargs)

    def finished_run(self) -> tuple[Path, list[str]]:
        return self.request.getfixturevalue("finished_run")

    def run(self, *args: str, out: Path | None = None) -> list[str]:
        return ["run", "--out", str(out or self.out), *args]

    def stopped_run(self) -> Path:
        """A copy (in this case's tmp) of a run stopped by its query cap, on task ``x`` of a
        data directory; resume it with :data:`RESUME_MORE`. Watched: the files a resume
        reads (a failed resume must leave them as they were)."""
        src, _ = self.request.getfixturevalue("stopped_run")
        run = self.tmp / "stopped"
        shutil.copytree(src, run)
        self.watch = [run / name for name in ("history.jsonl", "state", "journal", "config.json",
                                              "cache.sqlite", "ledger.sqlite")]
        return run


@dataclass(frozen=True)
class Case:
    """``starts``: the run gets as far as starting its pools (it logs progress first)."""

    id: str
    build: Callable[[Ctx], list[str]]
    needle: str
    starts: bool = False


def _malformed_yaml(c: Ctx) -> list[str]:
    cfg = c.tmp / "bad.yaml"
    cfg.write_text("bo:\n  budget: [1, 2\ntasks: {names: [plural]}\n")
    return c.run(str(cfg))


def _bad_json(c: Ctx) -> list[str]:
    data = ii_task(c.tmp / "data", induce='{"examples": {"1": {"input": "a", "output": "b"},')
    return c.run("--data-dir", str(data), "--tasks", "x")


def _missing_fields(c: Ctx) -> list[str]:
    data = ii_task(c.tmp / "data")
    ii_file(data / "induce" / "x.json",
            [{"input": f"w{i}", "output": f"w{i}s"} for i in range(30)] + [{"input": "w"}])
    return c.run("--data-dir", str(data), "--tasks", "x")


def _too_few(c: Ctx) -> list[str]:
    data = ii_task(c.tmp / "data", n=4)
    return c.run("--data-dir", str(data), "--tasks", "x")


def _jsonl_bad_line(c: Ctx) -> list[str]:
    (c.tmp / "data").mkdir()
    lines = [json.dumps({"input": f"w{i}", "output": f"w{i}s"}) for i in range(30)]
    lines.insert(7, '{"input": "oops", ')
    (c.tmp / "data" / "y.jsonl").write_text("\n".join(lines) + "\n")
    return c.run("--data-dir", str(c.tmp / "data"), "--tasks", "y")


def _empty_data_dir(c: Ctx) -> list[str]:
    (c.tmp / "empty").mkdir()
    return c.run("--data-dir", str(c.tmp / "empty"), "--tasks", "antonyms")


def _unreachable(c: Ctx) -> list[str]:
    c.request.getfixturevalue("ray_local")
    return c.run("--tasks", "plural",
                 *sets(*SIM, "evaluator.base_url=http://127.0.0.1:9/v1"))


def _wrong_key_env(c: Ctx) -> list[str]:
    # The evaluator actors read the key from their own environment; workers of the running
    # ray_local cluster do not see a variable set now (see test_secrets.py), so the request
    # goes with a wrong key or none: 401 either way, which is what this case checks.
    sim = c.sim(api_key="the-right-key")
    c.monkeypatch.setenv("OPENAI_API_KEY", "a-wrong-key")
    return c.run("--tasks", "plural", *sets(*SIM, f"evaluator.base_url={sim.base_url}"))


def _wrong_key_file(c: Ctx) -> list[str]:
    sim = c.sim(api_key="the-right-key")
    key = c.tmp / "key.txt"
    key.write_text("a-wrong-key\n")
    return c.run("--tasks", "plural", *sets(*SIM, f"evaluator.base_url={sim.base_url}",
                                            f"evaluator.api_key_file={key}"))


def _unknown_model(c: Ctx) -> list[str]:
    sim = c.sim()
    return c.run("--tasks", "plural", *sets(*SIM, f"evaluator.base_url={sim.base_url}",
                                            "evaluator.model=gpt-nope"))


def _every_call_400(c: Ctx) -> list[str]:
    sim = c.sim(fail_400=1.0)
    return c.run("--tasks", "plural", *sets(*SIM, f"evaluator.base_url={sim.base_url}"))


def _web_page_answers(c: Ctx) -> list[str]:
    sim = c.sim(bad_first=10_000, bad_kind="html")
    return c.run("--tasks", "plural", *sets(*SIM, f"evaluator.base_url={sim.base_url}",
                                            "evaluator.max_attempts=1"))


def _bad_answers(kind: str) -> Callable[[Ctx], list[str]]:
    """Every answer a 200 of ``kind`` (content a list, a number, null; ``choices: []``)."""

    def build(c: Ctx) -> list[str]:
        sim = c.sim(bad_first=10_000, bad_kind=kind)
        return c.run("--tasks", "plural", *sets(*SIM, f"evaluator.base_url={sim.base_url}",
                                                "evaluator.max_attempts=1"))

    return build


def _out_under_a_file(c: Ctx) -> list[str]:
    afile = c.tmp / "afile"
    afile.write_text("not a directory\n")
    c.watch = [afile, afile / "sub"]
    return c.run("--tasks", "plural", out=afile / "sub")


def _out_in_proc(c: Ctx) -> list[str]:
    c.watch = [Path("/proc/izray-test")]
    return c.run("--tasks", "plural", out=Path("/proc/izray-test"))


def _resume_not_a_run(c: Ctx) -> list[str]:
    (c.tmp / "notarun").mkdir()
    (c.tmp / "notarun" / "notes.txt").write_text("hello\n")
    c.watch = [c.tmp / "notarun"]
    return ["resume", str(c.tmp / "notarun")]


def _resume_empty_dir(c: Ctx) -> list[str]:
    (c.tmp / "empty").mkdir()
    c.watch = [c.tmp / "empty"]
    return ["resume", str(c.tmp / "empty")]


def _resume_missing(c: Ctx) -> list[str]:
    c.watch = [c.tmp / "nope"]
    return ["resume", str(c.tmp / "nope")]


RESUME_MORE = ("--set", "caps.task.queries=10")


def _config_file(c: Ctx, text: str) -> list[str]:
    cfg = c.tmp / "cfg.yaml"
    cfg.write_text(text)
    return c.run(str(cfg))


def _alias_bomb(c: Ctx) -> list[str]:
    rows = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        rows.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return _config_file(c, "\n".join(rows) + "\ntasks:\n  names: *i\n")


def _key_file_directory(c: Ctx) -> list[str]:
    sim = c.sim()
    (c.tmp / "keys").mkdir()
    return c.run("--tasks", "plural", *sets(*SIM, f"evaluator.base_url={sim.base_url}",
                                            f"evaluator.api_key_file={c.tmp / 'keys'}"))


def _key_file_empty(c: Ctx) -> list[str]:
    sim = c.sim()
    (c.tmp / "key.txt").write_text("\n")
    return c.run("--tasks", "plural", *sets(*SIM, f"evaluator.base_url={sim.base_url}",
                                            f"evaluator.api_key_file={c.tmp / 'key.txt'}"))


def _unreachable_ray_env(c: Ctx) -> list[str]:
    c.monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    return c.run("--tasks", "plural", *sets(*SIM))


def _state_not_an_object(c: Ctx) -> list[str]:
    run = c.stopped_run()
    (run / "state" / "x.json").write_text("[]\n")
    return ["resume", str(run), *RESUME_MORE]


def _state_wrong_fields(c: Ctx) -> list[str]:
    run = c.stopped_run()
    state = json.loads((run / "state" / "x.json").read_text())
    state["searcher"] = 5
    (run / "state" / "x.json").write_text(json.dumps(state))
    return ["resume", str(run), *RESUME_MORE]


def _projection_truncated(c: Ctx) -> list[str]:
    run = c.stopped_run()
    path = run / "state" / "x.projection.npz"
    path.write_bytes(path.read_bytes()[:100])
    c.watch.append(path)
    return ["resume", str(run), *RESUME_MORE]


def _cache_not_a_database(c: Ctx) -> list[str]:
    run = c.stopped_run()
    (run / "cache.sqlite").write_text("not a database\n")
    return ["resume", str(run), *RESUME_MORE]


def _ledger_not_a_database(c: Ctx) -> list[str]:
    run = c.stopped_run()
    (run / "ledger.sqlite").write_text("not a database\n")
    return ["resume", str(run), *RESUME_MORE]


def _journal_bad_line(c: Ctx) -> list[str]:
    run = c.stopped_run()
    journal = min((run / "journal").glob("*.jsonl"))
    with open(journal, "a") as fh:
        fh.write(json.dumps({"key": 5, "text": "cats"}) + "\n")
    return ["resume", str(run), *RESUME_MORE]


def _task_data_edited(c: Ctx) -> list[str]:
    run = c.stopped_run()
    _, data = c.request.getfixturevalue("stopped_run")
    path = data / "induce" / "x.json"
    original = path.read_text()
    c.request.addfinalizer(lambda: path.write_text(original))
    edited = json.loads(original)
    first = min(edited["examples"])
    edited["examples"][first]["output"] = "EDITED"
    path.write_text(json.dumps(edited))
    return ["resume", str(run), *RESUME_MORE]


def _disk_full(c: Ctx) -> list[str]:
    """A run whose file system fills up mid-run: a real tmpfs where this machine lets us mount
    one (root), else the same error raised where the ledger writes."""
    sim = c.sim()
    mount = c.tmp / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                             capture_output=True, check=False).returncode == 0
    if mounted:
        c.request.addfinalizer(lambda: subprocess.run(["umount", "-l", str(mount)], check=False))
        # Room for the start and the first answers, not for the run (~300 KiB).
        (mount / "fill").write_bytes(b"\0" * (4 * 2**20 - 200 * 2**10))
    else:
        from izray.evaluation.ledger import Ledger

        real = Ledger.record

        def full(self, records):
            if self.path.parent == mount / "run":
                raise sqlite3.OperationalError("database or disk is full")
            return real(self, records)

        c.monkeypatch.setattr(Ledger, "record", full)
    c.watch = []
    c.disk_full = mount / "run"
    return c.run("--tasks", "plural", *sets(*SIM, f"evaluator.base_url={sim.base_url}"),
                 out=mount / "run")


def _resume_forbidden(c: Ctx) -> list[str]:
    run, _ = c.finished_run()
    c.watch = [run]
    return ["resume", str(run), "--set", "bo.budget=99"]


def _different_config(c: Ctx) -> list[str]:
    run, args = c.finished_run()
    c.watch = [run]
    return ["run", "--out", str(run), *args, "--set", "bo.budget=5"]


CASES = [
    Case("malformed-yaml", _malformed_yaml, "malformed YAML at line"),
    Case("config-not-found", lambda c: c.run(str(c.tmp / "nope.yaml")), "nope.yaml not found"),
    Case("unknown-key", lambda c: c.run("--set", "bo.budjet=5"),
         "unknown config key 'bo.budjet' (did you mean 'bo.budget'?)"),
    Case("unknown-section", lambda c: c.run("--set", "evaluater.model=x"),
         "unknown config key 'evaluater' (did you mean 'evaluator'?)"),
    Case("set-without-value", lambda c: c.run("--set", "bo.budget"),
         "expected key=value"),
    Case("wrong-type", lambda c: c.run("--set", "bo.budget=abc"),
         "bo.budget: expected an integer (got 'abc')"),
    Case("out-of-range", lambda c: c.run("--set", "evaluator.temperature=3"),
         "evaluator.temperature: must be in [0, 2]"),
    Case("inconsistent-values", lambda c: c.run("--set", "bo.budget=4", "--set", "bo.n_init=9"),
         "bo.n_init: must be <= bo.budget (4)"),
    Case("unknown-task", lambda c: c.run("--tasks", "no_such_task"), "task 'no_such_task'"),
    Case("unknown-metric", lambda c: c.run("--tasks", "plural", "--set",
                                           "tasks.metrics.plural=bleu"), "bleu"),
    Case("empty-data-dir", _empty_data_dir, "contains no tasks"),
    Case("missing-data-dir", lambda c: c.run("--data-dir", str(c.tmp / "nodata"), "--tasks",
                                             "antonyms"), "nodata does not exist"),
    Case("task-file-bad-json", _bad_json, "x.json is not valid JSON"),
    Case("task-file-missing-field", _missing_fields, "example '31': field 'output' is missing"),
    Case("jsonl-bad-line", _jsonl_bad_line, "y.jsonl:8"),
    Case("too-few-examples", _too_few, "task 'x' has 4 pool examples"),
    Case("missing-vllm-model-path", lambda c: c.run(
        "--tasks", "plural", "--set", "generator.model=/nonexistent/model"),
        "model path /nonexistent/model is not a checkpoint directory", starts=True),
    Case("out-under-a-file", _out_under_a_file, "is not writable"),
    Case("out-in-proc", _out_in_proc, "/proc/izray-test is not writable"),
    Case("unreachable-endpoint", _unreachable, "cannot reach http://127.0.0.1:9/v1", starts=True),
    Case("401-key-from-env", _wrong_key_env, "401 from http://127.0.0.1:", starts=True),
    Case("401-key-from-file", _wrong_key_file, "the API key was rejected", starts=True),
    Case("unknown-model", _unknown_model, "model 'gpt-nope' is not served", starts=True),
    Case("400-on-every-call", _every_call_400, "all failed with HTTP 400", starts=True),
    Case("web-page-on-every-call", _web_page_answers, "all failed with MalformedResponse",
         starts=True),
    *(Case(f"200-with-{kind}-on-every-call", _bad_answers(kind),
           "all failed with MalformedResponse", starts=True)
      for kind in ("list", "int", "null", "no_choices")),
    Case("resume-not-a-run", _resume_not_a_run, "is not an izray run directory"),
    Case("resume-empty-dir", _resume_empty_dir, "is not an izray run directory"),
    Case("resume-missing-dir", _resume_missing, "nope is not a directory"),
    Case("resume-forbidden-override", _resume_forbidden, "resume cannot change bo.budget"),
    Case("run-into-other-config", _different_config,
         "holds a run with a different config (at bo.budget)"),
    Case("rpm-infinite", lambda c: c.run("--set", "evaluator.rpm=.inf"),
         "evaluator.rpm: expected a finite number (null for no limit) (got inf)"),
    Case("tpm-nan", lambda c: c.run("--set", "evaluator.tpm=.nan"),
         "evaluator.tpm: expected a finite number"),
    Case("num-cpus-infinite", lambda c: c.run("--set", "generator.num_cpus=.inf"),
         "generator.num_cpus: expected a finite number"),
    Case("num-gpus-nan", lambda c: c.run("--set", "generator.num_gpus=.nan"),
         "generator.num_gpus: expected a finite number"),
    Case("price-infinite", lambda c: c.run("--set", "prices.gpt-4o-mini.prompt=.inf"),
         "prices.gpt-4o-mini.prompt: expected a finite number"),
    Case("usd-cap-without-price", lambda c: c.run("--set", "evaluator.model=gpt-x", "--set",
                                                  "caps.run.usd=5"),
         "caps.run.usd: no price for the model 'gpt-x'"),
    Case("yaml-alias-bomb", _alias_bomb, "YAML aliases (*a) are not supported"),
    Case("yaml-duplicate-key", lambda c: _config_file(c, "bo:\n  budget: 5\n  budget: 50\n"),
         "duplicate key 'budget'"),
    Case("tasks-a-number", lambda c: c.run("--tasks", "123"),
         "task '123' is not a built-in task"),
    Case("ray-address-garbage", lambda c: c.run("--tasks", "plural", "--set",
                                                "ray.address=garbage:xx"),
         "ray.address='garbage:xx' is not a Ray address"),
    Case("ray-address-env-unreachable", _unreachable_ray_env,
         "cannot reach a Ray cluster at 127.0.0.1:9 ($RAY_ADDRESS)"),
    Case("key-file-is-a-directory", _key_file_directory, "is a directory", starts=True),
    Case("key-file-empty", _key_file_empty, "is empty; write the API key into it", starts=True),
    Case("state-not-an-object", _state_not_an_object, "x.json is not a state file (a JSON list"),
    Case("state-wrong-fields", _state_wrong_fields, "x.json has fields of the wrong shape"),
    Case("projection-truncated", _projection_truncated,
         "x.projection.npz is not a readable projection"),
    Case("cache-not-a-database", _cache_not_a_database,
         "cache.sqlite cannot be opened as a database"),
    Case("ledger-not-a-database", _ledger_not_a_database,
         "ledger.sqlite cannot be opened as a database"),
    Case("journal-bad-line", _journal_bad_line, "is not a journal record", starts=True),
    Case("task-data-edited", _task_data_edited, "the data of task x changed since the run"),
    Case("out-file-system-full", _disk_full, "fix it (free space, permissions), then `izray resume",
         starts=True),
]


@pytest.fixture(scope="module")
def finished_run(ray_local, tmp_path_factory):
    """A real, finished run (simulated generator and black box) and the run arguments."""
    from izray.testing.simulator import SimConfig, start_in_thread

    sim = start_in_thread(SimConfig())
    out = tmp_path_factory.mktemp("finished") / "run"
    args = ["--tasks", "plural", *sets(*SIM, f"evaluator.base_url={sim.base_url}")]
    try:
        assert main(["run", "--out", str(out), *args]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["tasks"]["plural"]["finished"] is True
        yield out, args
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def stopped_run(ray_local, tmp_path_factory):
    """A real run on task ``x`` of a data directory, stopped by ``caps.task.queries=2``
    (unfinished: a resume loads its projection); the run and the data directory."""
    from izray.testing.simulator import SimConfig, start_in_thread

    sim = start_in_thread(SimConfig())
    base = tmp_path_factory.mktemp("stopped")
    data = ii_task(base / "data")
    out = base / "run"
    try:
        assert main(["run", "--out", str(out), "--data-dir", str(data), "--tasks", "x",
                     *sets(*SIM, f"evaluator.base_url={sim.base_url}",
                           "caps.task.queries=2")]) == 3  # stopped by the cap
        summary = json.loads((out / "summary.json").read_text())
        assert summary["tasks"]["x"]["finished"] is True
        assert summary["tasks"]["x"]["stopped"]
        yield out, data
    finally:
        sim.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, request, monkeypatch, capsys):
    monkeypatch.delenv("IZRAY_DATA_DIR", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # a default runs/ directory would land here
    ctx = Ctx(tmp_path, request, monkeypatch)
    argv = case.build(ctx)
    before = {p: snapshot(p) for p in ctx.watch}
    capsys.readouterr()

    code = main(argv)

    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2, captured.err
    errors = [line for line in lines if line.startswith("izray: error:")]
    assert len(errors) == 1, captured.err
    assert case.needle in errors[0], errors[0]
    assert lines[-1] == errors[0], captured.err
    if case.starts:
        # Progress lines logged before the pools came up; nothing else (no traceback, no Ray
        # noise). The CLI logs "HH:MM:SS message". Lines Ray forwards from actors
        # ("(EvaluatorActor pid=N) ...") may belong to an earlier case's actors on the shared
        # test cluster, flushed late on a loaded machine: not this run's output.
        others = [x for x in lines[:-1] if not FORWARDED.match(x)]
        assert all(PROGRESS.match(line) for line in others), captured.err
    else:
        assert lines == errors, f"stderr is not exactly one line:\n{captured.err}"
    assert "Traceback" not in captured.out + captured.err
    for path, snap in before.items():
        assert snapshot(path) == snap, f"{path} changed"
    assert not (tmp_path / "runs").exists()
    full = getattr(ctx, "disk_full", None)
    if full is not None:  # what was paid stays; the line says how to go on
        assert (full / "history.jsonl").is_file() or (full / "journal").is_dir()
        assert f"izray resume {full}" in errors[0]


def test_num_actors_beyond_the_local_cluster(tmp_path):
    """A fixed generator pool the local cluster can never hold fails at start instead of
    waiting forever (a fresh process: the check applies to a cluster izray starts itself)."""
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    res = subprocess.run([sys.executable, "-m", "izray.cli", "run", "--tasks", "plural", "--out",
                          str(out), *sets(*SIM, "evaluator.base_url=http://127.0.0.1:9/v1",
                                          "generator.num_actors=40")],
                         capture_output=True, text=True, timeout=300, env=env, check=False)
    assert res.returncode == 2, res.stderr
    errors = [x for x in res.stderr.splitlines() if x.startswith("izray: error:")]
    assert len(errors) == 1 and "generator.num_actors=40 x generator.num_cpus=1 needs 40" in errors[0]
    assert "Traceback" not in res.stderr
    assert not out.exists()
