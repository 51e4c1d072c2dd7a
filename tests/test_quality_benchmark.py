"""benchmarks/quality.py --quick on the sim landscape, from the command line: every strategy
x seed through `izray run`, the JSON contract, the markdown table and the plot."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _quality_module():
    spec = importlib.util.spec_from_file_location("quality_bench", ROOT / "benchmarks" / "quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_variants_are_arms_with_their_own_overrides(capsys):
    quality = _quality_module()
    args = quality.parse_args(["--landscape", "sim", "--strategies", "instructzero,uniform",
                               "--variant", ("iz-paper=instructzero bo.surrogate=ic "
                               "bo.incumbent_samples=0"), "--reference", "iz-paper"])
    assert args.arms == {"instructzero": ("instructzero", []), "uniform": ("uniform", []),
                         "iz-paper": ("instructzero", ["bo.surrogate=ic",
                                                       "bo.incumbent_samples=0"])}
    assert args.strategy_list == ["instructzero", "uniform", "iz-paper"]
    for bad in (["--variant", "x=nosuch"], ["--variant", "uniform=uniform"],
                ["--variant", "x=ape bo.budget"], ["--reference", "nobody"]):
        with pytest.raises(SystemExit):
            quality.parse_args(["--landscape", "sim", *bad])
    assert "--variant" in capsys.readouterr().err


@pytest.mark.slow
def test_quality_quick_on_the_sim_landscape(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "quality.py"),
                           "--landscape", "sim", "--quick", "--seeds", "1", "--out", str(out),
                           "--work", str(work)],
                          capture_output=True, text=True, timeout=1500, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((out / "quality.json").read_text())
    assert result["landscape"] == "sim" and isinstance(result["machine"], dict)
    strategies = {"instructzero", "uniform", "ape"}
    rows = result["rows"]
    assert len(rows) == 3 * 1 * 4  # strategies x seeds x tasks (one seed keeps CI short)
    for r in rows:
        assert set(r) >= {"strategy", "task", "seed", "dev_score", "test_score", "queries",
                          "candidates", "api_calls"}
        # the budget is spent, or the candidate cap (5 x budget) ended a search stuck on
        # instructions it had scored, or a perfect dev score ended it (bo.stop_at_max)
        assert r["queries"] == 40 or r["candidates"] == 200 or r["dev_score"] == 1.0, r
        assert r["queries"] <= 40
        assert r["candidates"] >= r["queries"] and 0 <= r["test_score"] <= 1
    # The same cells for every strategy: same tasks and seeds.
    cells = {s: {(r["task"], r["seed"]) for r in rows if r["strategy"] == s} for s in strategies}
    assert cells["uniform"] == cells["ape"] == cells["instructzero"]
    summary = result["summary"]
    assert set(summary) == strategies
    for s, e in summary.items():
        lo, hi = e["ci95"]
        assert lo <= e["mean_test"] <= hi
        assert 1 <= e["mean_rank"] <= 3 and e["mean_api_calls"] > 0
        if s != "instructzero":
            assert e["wins_vs_instructzero"] + e["ties"] + e["losses"] == 4
    props = result["landscape_properties"]
    assert len(props) == 4 and all(p["distinct_in_1000"] > 300 for p in props)
    assert (out / "quality.png").read_bytes()[:4] == b"\x89PNG"
    assert "| strategy | mean test" in (out / "quality.md").read_text()
    # A second start keeps the finished runs.
    again = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "quality.py"),
                            "--landscape", "sim", "--quick", "--seeds", "1", "--out", str(out),
                            "--work", str(work)], capture_output=True, text=True, timeout=600,
                           check=False)
    assert again.returncode == 0 and again.stdout.count("done before, kept") == 3
    # The calibration benchmark replays the recorded soft-prompt histories.
    calib = tmp_path / "calibration.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "calibration.py"),
                           *(str(p) for p in sorted((work / "runs").glob("*-seed0"))),
                           "--surrogates", "ic,ic_residual", "--residuals", "1,3",
                           "--every", "3", "--out", str(calib)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cal = {r["surrogate"]: r for r in json.loads(calib.read_text())["results"]}
    assert set(cal) == {"ic", "ic_residual rho=1", "ic_residual rho=3"}
    assert all(r["n"] > 0 and 0 <= r["coverage_2sd"] <= 1 for r in cal.values())
    # a larger residual is more uncertain away from the data
    assert cal["ic_residual rho=3"]["median_sd"] > cal["ic_residual rho=1"]["median_sd"]
    # The racing audit replays every stopped candidate's full dev score on the landscape;
    # its own check (replayed == recorded for every fully scored instruction) must hold.
    audit = tmp_path / "audit.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "racing_audit.py"),
                           *(str(p) for p in sorted((work / "runs").glob("*-seed0"))),
                           "--out", str(audit)], capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {r["run"]: r for r in json.loads(audit.read_text())["rows"]}
    assert set(rows) == {"instructzero-seed0", "uniform-seed0", "ape-seed0"}
    assert all(0 <= r["missed"] <= r["raced"] < r["distinct"] <= r["candidates"]
               for r in rows.values())
    assert sum(r["raced"] for r in rows.values()) > 0  # racing is on by default
    # Repeats groups arms into settings and compares them on the same cells.
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "repeats.py"),
                           str(out / "quality.json"), "--setting", "iz=instructzero",
                           "--setting", "baselines=uniform,ape"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rep = json.loads((out / "repeats.json").read_text())["settings"]
    assert rep["baselines"]["vs_reference"]["n"] == 4
    assert list(rep["baselines"]["repeat_pairs"]) == ["uniform - ape"]
