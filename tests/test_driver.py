"""The driver end to end on real Ray, with the simulated generator and the real openai client
against the black-box simulator (a real HTTP server on loopback). Fast: seconds per run."""

from __future__ import annotations

import json
import re

import pytest

from izray.app import run_config
from izray.cli import main
from izray.config import config_from_dict


def sim_config(sim, *extra: str):
    return config_from_dict({}, [
        "tasks.names=[plural, larger_number]", "generator.backend=sim",
        f"evaluator.base_url={sim.base_url}", "evaluator.model=sim-model",
        "bo.budget=12", "bo.n_init=4", "bo.batch_size=3", "tasks.n_test=10",
        "bo.stop_at_max=false", *extra])  # these tests count the whole budget


def read_history(out):
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def test_run_writes_contract_outputs(ray_local, simulator, tmp_path, capsys):
    sim = simulator(latency_ms=(1, 5))
    out = tmp_path / "run"
    assert run_config(sim_config(sim), out)["tasks"]
    summary = json.loads((out / "summary.json").read_text())
    history = read_history(out)
    assert set(summary["tasks"]) == {"plural", "larger_number"}
    assert summary["strategy"] == "instructzero"
    for name, r in summary["tasks"].items():
        assert r["strategy"] == "instructzero"
        assert isinstance(r["best_instruction"], str) and r["best_instruction"]
        assert 0.0 <= r["dev_score"] <= 1.0 and 0.0 <= r["test_score"] <= 1.0
        # The budget counts paid queries: distinct instructions scored on dev.
        assert r["queries"] == 12
        for key in ("api_calls", "prompt_tokens", "completion_tokens"):
            assert isinstance(r[key], int) and r[key] > 0
        assert r["wall_s"] > 0
        lines = [h for h in history if h["task"] == name]
        assert r["candidates"] == len(lines) >= 12
        assert [h["step"] for h in lines] == list(range(1, len(lines) + 1))
        assert [h["query"] for h in lines if h["query"]] == list(range(1, 13))
        assert len({h["instruction"] for h in lines}) == 12  # duplicates were no query
        assert all(h["cached"] for h in lines if h["query"] is None)
        assert r["dev_score"] == max(h["dev_score"] for h in lines)
        assert all(len(h["z"]) == 10 and all(-1 <= v <= 1 for v in h["z"]) for h in lines)
        # Racing is on by default: a stopped candidate paid for its first slice only.
        dev_prompts = sum(h.get("dev_examples", 20) for h in lines if h["query"])
        assert r["prompts"] == dev_prompts + 10
        assert any("dev_examples" in h for h in lines)  # the default raced something
    assert set(history[0]) >= {"task", "step", "z", "instruction", "dev_score", "cached", "query",
                               "t"}
    assert summary["config"]["bo"]["budget"] == 12
    # Every request the server saw is accounted, and none was paid twice.
    assert sim.stats.requests == sum(r["api_calls"] for r in summary["tasks"].values())
    assert sim.stats.as_dict()["repeated_prompts"] == 0
    # Identical instructions are evaluated once: calls = the prompts asked, none twice.
    for r in summary["tasks"].values():
        assert r["api_calls"] == r["prompts"]
    # The simulated landscape has a right answer; BO finds an instruction that names it.
    assert summary["tasks"]["plural"]["dev_score"] >= 0.7
    from izray.report import format_results  # what `izray run` prints

    printed = format_results(summary)
    assert "best instruction:" in printed and "test score" in printed
    # The driver's log is kept in the run directory, with dates.
    log_lines = (out / "logs" / "driver.log").read_text().splitlines()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO started ", log_lines[0]), log_lines[0]
    for name in ("plural", "larger_number"):
        assert any(f"[{name}] 12/12 " in line for line in log_lines), name
        assert any(f"[{name}] done: test=" in line for line in log_lines), name


def test_failed_candidates_are_recorded_not_scored_zero(ray_local, simulator, tmp_path):
    sim = simulator(fail_500=0.02, seed=3)
    out = tmp_path / "run"
    cfg = sim_config(sim, "evaluator.max_attempts=1", "tasks.names=[plural]")
    assert run_config(cfg, out)["tasks"]
    history = read_history(out)
    failed = [h for h in history if "error" in h]
    assert failed, "with 2% 500s and no retries some candidates must fail"
    assert all(h["dev_score"] is None for h in failed)
    summary = json.loads((out / "summary.json").read_text())["tasks"]["plural"]
    assert summary["queries"] == 12 and summary["failed_queries"] == len(failed)
    assert sim.stats.requests == summary["api_calls"]


def test_unreachable_endpoint_is_one_line_error_and_leaves_nothing(ray_local, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--tasks", "plural", "--out", str(out), "--set", "generator.backend=sim",
                 "--set", "evaluator.base_url=http://127.0.0.1:9/v1", "--set",
                 "evaluator.model=m", "--set", "bo.budget=4", "--set", "bo.n_init=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert err[-1].startswith("izray: error: cannot reach http://127.0.0.1:9/v1")
    assert not out.exists()


def test_unknown_model_fails_fast(ray_local, simulator, tmp_path, capsys):
    sim = simulator()
    code = main(["run", "--tasks", "plural", "--out", str(tmp_path / "r"), "--set",
                 "generator.backend=sim", "--set", f"evaluator.base_url={sim.base_url}",
                 "--set", "evaluator.model=gpt-nope", "--set", "bo.budget=4", "--set",
                 "bo.n_init=2"])
    assert code != 0
    assert "model 'gpt-nope' is not served" in capsys.readouterr().err
    assert sim.stats.requests == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--tasks", "no_such_task"], "task 'no_such_task'"),
        (["--set", "bo.budget=x"], "bo.budget: expected an integer"),
        (["--data-dir", "/nonexistent/dir", "--tasks", "antonyms"], "/nonexistent/dir"),
    ],
)
def test_bad_input_before_anything_starts(args, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("IZRAY_DATA_DIR", raising=False)
    out = tmp_path / "r"
    code = main(["run", "--out", str(out), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("izray: error:") and needle in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_status_line_reports_the_window_since_the_last_line(tmp_path, caplog):
    from izray.driver import Driver, prepare_tasks
    from izray.report import RunDir

    cfg = config_from_dict({}, ["tasks.names=[plural, larger_number]", "bo.budget=12",
                                "bo.n_init=4", "evaluator.base_url=http://127.0.0.1:9/v1",
                                "evaluator.model=m", "evaluator.rpm=60"])
    now = [1000.0]
    driver = Driver(cfg, RunDir(tmp_path / "run"), prepare_tasks(cfg), clock=lambda: now[0])

    from types import SimpleNamespace

    broker = SimpleNamespace(throttled={"plural": 0}, inflight=0)  # what the line reads
    driver.broker = broker
    driver.generators = SimpleNamespace(size=0, active_calls=0, queue=[])
    driver.metrics.disabled = True
    try:
        a, b = driver.runs.values()
        a.queries = 4  # 4 queries were done before this session (a resume)
        driver.status.start(now[0], 0, 0, 0, 4)
        a.usage.calls, a.queries, b.queries = 90, 8, 2
        broker.throttled = {"plural": 3}
        a.records.append({"query": 5, "error": "HTTP 500"})
        now[0] = 1060.0
        with caplog.at_level("INFO", logger="izray"):
            driver._status()
        line = caplog.records[-1].getMessage()
        assert "90 API calls, 90/min (limit 60/min), 3 x 429 and 1 failed candidate since " \
            "the last line" in line, line
        assert line.endswith(", ~2 min left")  # 6 queries/min, 14 left
        now[0] = 1070.0
        driver._status()  # too soon: no line
        assert caplog.records[-1].getMessage() == line
    finally:
        driver.close()


def test_the_error_that_ends_a_session_is_in_the_run_log(ray_local, simulator, tmp_path,
                                                         monkeypatch, capsys):
    from izray.driver import Driver
    from izray.errors import RunStateError

    sim = simulator(latency_ms=(1, 3))
    out = tmp_path / "run"
    assert run_config(sim_config(sim, "tasks.names=[plural]", "bo.budget=4"), out)["tasks"]

    def broken_run(self):
        raise RunStateError("disk full while writing state/plural.json")

    monkeypatch.setattr(Driver, "run", broken_run)
    monkeypatch.setattr(Driver, "load", lambda self: 0)  # pretend work is left to do
    assert main(["resume", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "izray: error: disk full while writing state/plural.json"
    log_lines = (out / "logs" / "driver.log").read_text().splitlines()
    assert " INFO resumed " in log_lines[-2]
    assert log_lines[-1].endswith(
        " ERROR run stopped: RunStateError: disk full while writing state/plural.json")


@pytest.mark.parametrize("strategy", ["uniform", "ape"])
def test_baseline_strategies_run_through_the_same_driver(ray_local, simulator, tmp_path, strategy):
    sim = simulator(latency_ms=(1, 3))
    out = tmp_path / "run"
    refs = "tasks.reference_instructions={plural: [Write the plural form., Repeat the word.]}"
    assert run_config(sim_config(sim, f"strategy={strategy}", refs), out)["tasks"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategy"] == strategy
    history = read_history(out)
    for name, r in summary["tasks"].items():
        assert r["strategy"] == strategy and r["finished"] and r["queries"] == 12
        lines = [h for h in history if h["task"] == name]
        if strategy == "ape":
            assert all(h["z"] is None and len(h["exemplars"]) == 5 for h in lines)
        else:
            assert all(len(h["z"]) == 10 for h in lines)
    refs_out = {x["instruction"]: x for x in summary["tasks"]["plural"]["references"]}
    good, bad = refs_out["Write the plural form."], refs_out["Repeat the word."]
    # The simulator follows the good one (with its noise on 10 test items) and not the bad one.
    assert good["test_score"] >= 0.6 and good["dev_score"] >= 0.6
    assert bad["dev_score"] <= 0.2 and bad["test_score"] <= 0.2
    assert summary["tasks"]["larger_number"]["references"] == []
    # Reference calls are paid (and counted) but are no queries.
    assert sim.stats.requests == summary["usage"]["api_calls"]
    # Racing (on by default, for every strategy) pays a stopped candidate's first slice only.
    plural = [h for h in history if h["task"] == "plural" and h["query"]]
    dev_prompts = sum(h.get("dev_examples", 20) for h in plural)
    assert summary["tasks"]["plural"]["prompts"] == dev_prompts + 10 + 2 * (20 + 10)


def test_sim_hard_landscape_end_to_end(ray_local, simulator, tmp_path):
    sim = simulator(landscape="hard", noise=0.0)
    out = tmp_path / "run"
    cfg = sim_config(sim, "generator.model=sim-hard", "generator.max_new_tokens=8",
                     "tasks.names=[last_item]", "bo.budget=16", "bo.n_init=8")
    assert run_config(cfg, out)["tasks"]
    history = read_history(out)
    from izray.testing.landscape import parse

    assert all(parse(h["instruction"]) or h["instruction"].startswith(("Answer", "Respond"))
               for h in history)
    assert len({h["dev_score"] for h in history}) > 3  # scores spread over the box


@pytest.mark.parametrize("surrogate", ["ic", "matern"])
def test_surrogate_settings_reach_the_proposals(ray_local, simulator, tmp_path, surrogate):
    sim = simulator(latency_ms=(1, 3))
    out = tmp_path / "run"
    cfg = sim_config(sim, "tasks.names=[plural]", f"bo.surrogate={surrogate}",
                     "bo.incumbent_samples=8", "bo.residual=1.5")
    assert run_config(cfg, out)["tasks"]
    state = json.loads((out / "state" / "plural.json").read_text())
    settings = state["searcher"]["config"]["settings"]
    assert (settings["surrogate"], settings["incumbent_samples"], settings["residual"]) == (
        surrogate, 8, 1.5)
    hp = state["searcher"]["hyperparameters"]  # the model that was fitted is of that kind
    assert any("score_kernel" in k for k in hp) == (surrogate == "ic")
    assert json.loads((out / "summary.json").read_text())["tasks"]["plural"]["queries"] == 12


def test_racing_and_rescoring_through_the_driver(ray_local, simulator, tmp_path):
    sim = simulator(latency_ms=(1, 3))
    out = tmp_path / "run"
    cfg = sim_config(sim, "tasks.names=[plural]", "bo.racing=0.25", "bo.rescore_top_k=3")
    assert run_config(cfg, out)["tasks"]
    summary = json.loads((out / "summary.json").read_text())
    r = summary["tasks"]["plural"]
    sel = r["selection"]
    assert r["queries"] == 12 and r["finished"] and sel["done"] and len(sel["rows"]) == 3
    assert sel["winner"] == r["best_instruction"]
    raced = [h for h in read_history(out) if h.get("dev_examples")]
    assert r["raced_queries"] == len(raced) and all(h["dev_examples"] == 5 for h in raced)
    # Every black-box prompt is accounted for: full dev, raced slices, re-scoring, test.
    assert r["prompts"] == 20 * (12 - len(raced)) + 5 * len(raced) + 3 * sel["n_extra"] + 10
    assert sim.stats.requests == summary["usage"]["api_calls"] == r["prompts"]


def test_stop_at_max_ends_a_task_at_a_perfect_dev_score(ray_local, simulator, tmp_path):
    sim = simulator(latency_ms=(1, 5))
    out = tmp_path / "run"
    cfg = sim_config(sim, "tasks.names=[plural]", "bo.budget=40", "bo.stop_at_max=true")
    assert run_config(cfg, out)["tasks"]
    r = json.loads((out / "summary.json").read_text())["tasks"]["plural"]
    history = read_history(out)
    first = next(h for h in history if h["dev_score"] == 1.0)  # the sim's plural reaches 1.0
    assert r["dev_score"] == 1.0 and r["best_instruction"] == first["instruction"]
    assert r["queries"] < 40 and "bo.stop_at_max" in r["converged"] and r["stopped"] is None
    assert r["test_score"] is not None and r["finished"]
    # only the candidates in flight when the perfect score arrived were told after it
    assert len(history) <= first["step"] + 3


def test_resuming_a_finished_run_rewrites_a_stale_summary(ray_local, simulator, tmp_path):
    sim = simulator(latency_ms=(1, 3))
    out = tmp_path / "run"
    assert run_config(sim_config(sim, "tasks.names=[plural]", "bo.budget=6"), out)["tasks"]
    good = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text('{"tasks": {}}')  # killed before the summary was written
    assert main(["resume", str(out)]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["tasks"]["plural"]["test_score"] == good["tasks"]["plural"]["test_score"]
    assert again["tasks"]["plural"]["queries"] == good["tasks"]["plural"]["queries"] == 6
