"""Crash points (``IZRAY_CRASH_AT``): SIGKILL at each named point, resume, check the invariants.

The judge is the black-box simulator's own request log: after the resume no observation is
lost, every request the server saw is accounted in ``summary.json`` (``api_calls``), and no
prompt is paid twice, except the one call whose answer existed only in the memory of the
evaluator that died (point ``answer``), which the run counts in ``lost_in_flight``.
The cluster is a real ``ray start --head`` (detached evaluators, as under ``ray job submit``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SECRET

from izray.testing.crash import CRASH_AT, CRASH_MARK, POINTS

BUDGET = 6


def _izray(args: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "izray.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _config(tmp_path: Path, base_url: str, concurrency: int) -> Path:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "tasks:\n  names: [plural]\n  n_test: 5\n  n_dev: 10\n"
        "generator:\n  backend: sim\n"
        f"evaluator:\n  base_url: {base_url}\n  model: sim-model\n"
        f"  concurrency: {concurrency}\n"
        f"bo:\n  budget: {BUDGET}\n  n_init: 3\n  batch_size: 3\n  stop_at_max: false\n")
    return cfg


def _check_invariants(out: Path, sim, repeats_allowed: int = 0) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    task = summary["tasks"]["plural"]
    assert task["finished"] and task["queries"] == BUDGET and task["test_score"] is not None
    records = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    # Nothing lost, nothing told twice.
    assert sorted(h["candidate"] for h in records) == list(range(len(records)))
    assert [h["query"] for h in records if h["query"]] == list(range(1, BUDGET + 1))
    stats = sim.stats.as_dict()
    assert stats["requests"] == summary["usage"]["api_calls"], (stats, summary["usage"])
    assert stats["repeated_prompts"] == repeats_allowed
    assert stats["unauthorized"] == 0
    return summary


def test_crash_point_kills_on_the_nth_pass_once(tmp_path):
    code = ("from izray.testing.crash import crash_point\n"
            "for i in range(3):\n    print(i, flush=True); crash_point('ledger')\n")
    env = dict(os.environ, **{CRASH_AT: "ledger:2", CRASH_MARK: str(tmp_path / "mark")})
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           check=False)
    assert first.returncode == -9 and first.stdout.split() == ["0", "1"]
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           check=False)  # the mark exists: once only
    assert again.returncode == 0 and again.stdout.split() == ["0", "1", "2"]
    other = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **{CRASH_AT: "state"}),
                           capture_output=True, text=True, check=False)
    assert other.returncode == 0


@pytest.mark.slow
def test_driver_killed_at_ledger_state_and_summary(ray_head, simulator, tmp_path):
    sim = simulator(api_key=SECRET, latency_ms=(20, 60))
    out = tmp_path / "run"
    env = dict(ray_head.client_env, RAY_ADDRESS=ray_head.gcs)
    cmd = ["run", str(_config(tmp_path, sim.base_url, 8)), "--out", str(out)]
    for point in ("ledger:3", "state:2", "summary"):
        res = _izray(cmd, dict(env, **{CRASH_AT: point}))
        assert res.returncode == -9, f"{point}: {res.returncode} {res.stderr[-2000:]}"
        cmd = ["resume", str(out)]
    final = _izray(cmd, env)
    assert final.returncode == 0, final.stderr[-3000:]
    summary = _check_invariants(out, sim)
    print(f"\nFIGURES crash points ledger/state/summary: server requests "
          f"{sim.stats.requests}, accounted {summary['usage']['api_calls']}, repeated 0")


@pytest.mark.slow
@pytest.mark.parametrize("point", ["answer", "journal"])
def test_evaluator_killed_after_answer_or_journal(ray_head, simulator, tmp_path, point):
    # One call in flight per actor, so the kill's loss is exactly the call at the point.
    sim = simulator(api_key=SECRET, latency_ms=(20, 60))
    out = tmp_path / "run"
    env = dict(ray_head.client_env, RAY_ADDRESS=ray_head.gcs,
               **{CRASH_AT: f"{point}:5", CRASH_MARK: str(tmp_path / "mark")})
    res = _izray(["run", str(_config(tmp_path, sim.base_url, 1)), "--out", str(out)], env)
    assert res.returncode == 0, res.stderr[-3000:]  # Ray restarted the actor; the run went on
    assert (tmp_path / "mark").is_file(), "the evaluator never reached the crash point"
    lost = 1 if point == "answer" else 0
    summary = _check_invariants(out, sim, repeats_allowed=lost)
    assert summary["usage"]["lost_in_flight"] == lost


def test_points_are_documented():
    from izray.testing import crash

    for point in POINTS:
        assert f"``{point}``" in crash.__doc__
