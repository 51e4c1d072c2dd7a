"""`izray run` end to end through the real path: vLLM generator actor, the embedded vLLM
OpenAI server on the small real model, the openai client, BoTorch, on shared tasks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def izray(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "izray.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)


def test_run_on_shared_tasks_with_real_engines(tmp_path, ii_data_dir, small_model):
    """One engine: the embedded server is the black box and, through prompt embeds, the
    generator (the quickstart's setting); the baselines below use the in-process engine."""
    # A data directory in the shared format that izray has never seen: a renamed copy of one
    # shared task next to the small informal_to_formal task (15 examples).
    data = tmp_path / "data"
    for split in ("induce", "execute"):
        (data / split).mkdir(parents=True)
        shutil.copy(ii_data_dir / split / "larger_animal.json", data / split / "bigger_beast.json")
        shutil.copy(ii_data_dir / split / "informal_to_formal.json",
                    data / split / "informal_to_formal.json")
    out = tmp_path / "run"
    proc = izray("run", "--data-dir", str(data), "--tasks", "bigger_beast,informal_to_formal",
                 "--out", str(out), "--set", "bo.budget=6", "--set", "bo.n_init=4", "--set", "bo.stop_at_max=false",
                 "--set", "bo.batch_size=3", "--set", "tasks.n_test=10",
                 "--set", "generator.max_new_tokens=32", "--set", "generator.backend=served")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tasks"]) == {"bigger_beast", "informal_to_formal"}
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    for name, r in summary["tasks"].items():
        assert r["queries"] == 6
        assert isinstance(r["best_instruction"], str)
        assert 0.0 <= r["dev_score"] <= 1.0 and 0.0 <= r["test_score"] <= 1.0
        assert r["api_calls"] > 0 and r["prompt_tokens"] > 0 and r["completion_tokens"] > 0
        lines = [h for h in history if h["task"] == name]
        # One line per candidate; a duplicate instruction is an observation, not a query.
        assert len(lines) == r["candidates"] >= 6
        assert sorted(h["query"] for h in lines if h["query"]) == list(range(1, 7))
    # informal_to_formal has 15 examples: 5 exemplars leave a non-empty dev split of 10
    assert summary["tasks"]["informal_to_formal"]["n_dev"] == 10
    assert summary["tasks"]["informal_to_formal"]["metric"] == "f1"
    assert (out / "state" / "bigger_beast.projection.npz").is_file()
    assert "best instruction:" in proc.stdout
    assert "bigger_beast" in proc.stdout
    # The engines' own output went to the run's logs; what the generator actor forwards to
    # the terminal is izray's lines only.
    assert (out / "logs" / "generator.log").stat().st_size > 0
    assert (out / "logs" / "server.log").stat().st_size > 0
    noise = [x for x in proc.stderr.splitlines() if "GeneratorActor pid=" in x and "izray" not in x]
    assert not noise, noise[:10]
    assert "generator and black box: one engine" in proc.stderr


def test_baseline_strategy_with_real_engines(tmp_path, ii_data_dir):
    """`--set strategy=uniform` end to end on the default two engines (the in-process vLLM
    generator actor and the embedded server), on task data izray has never seen, with a
    reference instruction scored beside the search. APE runs against servers at a URL in
    tests/test_generation_served_backend.py."""
    strategy = "uniform"
    data = tmp_path / "data"
    for split in ("induce", "execute"):
        (data / split).mkdir(parents=True)
        shutil.copy(ii_data_dir / split / "larger_animal.json", data / split / "bigger_beast.json")
    out = tmp_path / "run"
    ref = "Write the larger of the two animals."
    proc = izray("run", "--data-dir", str(data), "--tasks", "bigger_beast", "--out", str(out),
                 "--set", f"strategy={strategy}", "--set", "bo.budget=4", "--set", "bo.n_init=4", "--set", "bo.stop_at_max=false",
                 "--set", "bo.batch_size=2", "--set", "bo.max_candidates=20",
                 "--set", "tasks.n_dev=5", "--set", "tasks.n_test=5",
                 "--set", "generator.max_new_tokens=24",
                 "--set", f"tasks.reference_instructions={{bigger_beast: [{ref}]}}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategy"] == strategy
    r = summary["tasks"]["bigger_beast"]
    assert r["strategy"] == strategy and r["finished"]
    assert r["queries"] == 4 and r["candidates"] >= 4
    assert 0.0 <= r["test_score"] <= 1.0
    assert r["references"][0]["instruction"] == ref
    assert 0.0 <= r["references"][0]["dev_score"] <= 1.0
    assert 0.0 <= r["references"][0]["test_score"] <= 1.0
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == r["candidates"]
    assert len({h["instruction"] for h in history if h["query"]}) == 4
    assert all(len(h["z"]) == 10 and "exemplars" not in h for h in history)
    assert "yours " in proc.stdout and "-> izray" in proc.stdout
