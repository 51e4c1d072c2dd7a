"""`generator.num_actors: auto` grows the generator pool when GPU nodes join the cluster.

A real multi-node Ray cluster on one machine: the `ray start --head` cluster plus worker nodes
started with `ray start --address=...`, each declaring one (logical) GPU, as the autoscaler's
new GPU nodes would. The simulated generator needs no real GPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BIN, _free_port, kill_tree

pytestmark = pytest.mark.slow


def _add_gpu_node(gcs: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "ray"), "start", f"--address={gcs}", "--num-gpus=1",
                             "--num-cpus=1", "--block", "--disable-usage-stats",
                             f"--dashboard-agent-listen-port={_free_port()}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)


def test_auto_pool_grows_when_a_gpu_node_joins(private_ray_head, simulator, tmp_path):
    ray_head = private_ray_head  # nodes join and leave: keep the shared head out of it
    sim = simulator(latency_ms=(5, 20))
    env = dict(ray_head.client_env, RAY_ADDRESS=ray_head.gcs)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "tasks:\n  names: [plural, larger_number, last_item, first_letter]\n  n_test: 5\n"
        "generator:\n  backend: sim\n  num_actors: auto\n  num_gpus: 1\n  num_cpus: 0\n"
        f"evaluator:\n  base_url: {sim.base_url}\n  model: sim-model\n"
        "bo:\n  budget: 30\n  n_init: 6\n  batch_size: 3\n  stop_at_max: false\n")
    out = tmp_path / "run"
    nodes = [_add_gpu_node(ray_head.gcs, env)]
    try:
        time.sleep(8)  # the first GPU node registers
        driver = subprocess.Popen([sys.executable, "-m", "izray.cli", "run", str(cfg), "--out",
                                   str(out)], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not (out / "history.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        nodes.append(_add_gpu_node(ray_head.gcs, env))  # the autoscaler adds a GPU node
        _, stderr = driver.communicate(timeout=600)
    finally:
        for node in nodes:
            kill_tree(node.pid)
    assert driver.returncode == 0, stderr[-3000:]
    assert "generator pool: 1 new actor(s) for new GPU capacity (pool of 2)" in stderr
    assert "generator pool: a new actor is ready (2 ready)" in stderr
    summary = json.loads((out / "summary.json").read_text())
    # The budget is spent, or the candidate cap ended a search that kept finding instructions
    # it had already scored (the easy sim landscape converges).
    assert all(r["finished"] and (r["queries"] == 30 or "bo.max_candidates" in r["stopped"])
               for r in summary["tasks"].values())
    lines = [json.loads(x) for x in Path(out / "history.jsonl").read_text().splitlines()]
    assert len(lines) == sum(r["candidates"] for r in summary["tasks"].values())
    queries = sum(r["queries"] for r in summary["tasks"].values())
    assert sum(1 for h in lines if h["query"]) == queries  # duplicates are free observations
