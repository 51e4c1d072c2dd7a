"""benchmarks/soak.py, short (what CI runs of the soak): a cluster-mode run with 4 evaluator
actors against the faulty simulator, its driver SIGKILLed twice and resumed; the script's
own invariants decide its exit code, and its JSON carries the figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_soak_quick_cluster_four_actors(tmp_path):
    out = tmp_path / "soak.json"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--quick",
                          "--modes", "cluster", "--actors", "4", "--budget", "8",
                          "--out", str(out)], capture_output=True, text=True, timeout=900,
                         check=False)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "invariants hold" in res.stdout
    (row,) = json.loads(out.read_text())["rows"]
    assert row["mode"] == "cluster" and row["actors"] == 4 and row["kills"] == 2
    assert row["lost_obs"] == 0 and row["req_minus_calls"] == 0
    assert row["repeated"] == 0  # detached evaluators finished the calls the driver left
    injected = row["details"][0]["injected"]
    assert injected["injected_429"] and injected["injected_malformed"]  # the faults happened
    assert len(row["details"][0]["resume_s"]) == 2
