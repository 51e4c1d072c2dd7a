"""`ray job submit --working-dir . -- izray run CONFIG.yaml` against a real Ray cluster: a
local head started with `ray start --head` for this module and stopped afterwards.

The job uses the simulated generator and the black-box simulator (so it takes seconds), with
an API key the simulator requires. The key lives only in the cluster nodes' environment; the
test checks it never shows up in the run's files, the job's logs or its metadata.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SECRET

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_job_submit_runs_izray_on_the_cluster(ray_head, simulator, tmp_path):
    address, client_env, ray_temp = ray_head.dashboard, ray_head.client_env, ray_head.temp
    sim = simulator(api_key=SECRET, latency_ms=(1, 5))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "tasks:\n  names: [plural, larger_number]\n  n_test: 10\n"
        "generator:\n  backend: sim\n"
        f"evaluator:\n  base_url: {sim.base_url}\n  model: sim-model\n  rpm: 3000\n"
        "bo:\n  budget: 8\n  n_init: 4\n  batch_size: 2\n  stop_at_max: false\n")
    out = tmp_path / "results"
    for _ in range(8):
        proc = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir",
             str(REPO), "--submission-id", "izray-test-job", "--", "izray", "run", str(cfg),
             "--out", str(out)],
            env=client_env, capture_output=True, text=True, timeout=900, check=False)
        # Ray's own transient refusal (e.g. right after other tests' worker nodes left the
        # cluster): the job was not created; submit again, as its message asks.
        if "No available agent to submit job" not in proc.stderr:
            break
        time.sleep(15)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "succeeded" in proc.stdout

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tasks"]) == {"plural", "larger_number"}
    assert all(r["queries"] == 8 and r["test_score"] is not None
               for r in summary["tasks"].values())
    # The key reached the evaluator actors from the node's environment: no 401s.
    assert sim.stats.unauthorized == 0
    assert sim.stats.requests == sum(r["api_calls"] for r in summary["tasks"].values())

    # The key is nowhere: run files, job logs, job metadata, Ray's own session logs.
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    for cmd in (["logs", "izray-test-job"], ["status", "izray-test-job"], ["list"]):
        shown = subprocess.run([str(BIN / "ray"), "job", *cmd, "--address", address],
                               env=client_env, capture_output=True, text=True, check=False)
        assert shown.returncode == 0
        assert SECRET not in shown.stdout + shown.stderr
    for path in ray_temp.rglob("*.log"):
        assert SECRET.encode() not in path.read_bytes(), path
