"""Spending caps (``caps.task.*``, ``caps.run.*``), prices, resume with raised caps and the
shared response cache (``evaluator.cache_path``), end to end through the CLI on real Ray with
the simulated generator and the black-box simulator."""

from __future__ import annotations

import json
from pathlib import Path

from izray.cli import main

N_DEV = 20
BUDGET = 8
BATCH = 2


def run_argv(sim, out: Path, *extra: str, tasks: str = "plural") -> list[str]:
    sets = [
        "generator.backend=sim", f"evaluator.base_url={sim.base_url}", "evaluator.model=sim-model",
        f"bo.budget={BUDGET}", "bo.n_init=4", "bo.stop_at_max=false", f"bo.batch_size={BATCH}", f"tasks.n_dev={N_DEV}",
        "tasks.n_test=5", "generator.max_new_tokens=8", *extra,
    ]
    argv = ["run", "--tasks", tasks, "--out", str(out)]
    for s in sets:
        argv += ["--set", s]
    return argv


def read_summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def read_history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def capped_run(sim, out: Path) -> dict:
    """A run of ``plural`` stopped by ``caps.task.api_calls=60`` (3 dev evaluations)."""
    assert main(run_argv(sim, out, "caps.task.api_calls=60")) == 3  # EXIT_INCOMPLETE
    return read_summary(out)


def test_task_api_call_cap_stops_gracefully(ray_local, simulator, tmp_path, capsys):
    sim = simulator(latency_ms=(1, 3))
    out = tmp_path / "run"
    summary = capped_run(sim, out)  # exit 3: stopped by a cap (not an error: results kept)
    r = summary["tasks"]["plural"]
    assert r["finished"] is True
    assert r["stopped"] is not None and r["stopped"].startswith("caps.task.api_calls=60 reached")
    assert r["test_score"] is None  # no test evaluation for a stopped task
    assert r["n_dev"] == N_DEV
    # A ceiling: admitted only while spent + in flight + the next query's 20 calls fit.
    assert r["api_calls"] <= 60 < r["api_calls"] + N_DEV
    assert r["queries"] < BUDGET
    # Every HTTP request the server saw is accounted for, once.
    assert sim.stats.requests == r["api_calls"] == summary["usage"]["api_calls"]
    assert sim.stats.as_dict()["repeated_prompts"] == 0
    history = read_history(out)
    assert len([h for h in history if h["query"]]) == r["queries"]
    assert sum(h["api_calls"] for h in history) == r["api_calls"]
    # Nothing was generated only to be thrown away: every issued candidate was scored.
    assert all(h["dev_score"] is not None and "error" not in h for h in history), history
    state = json.loads((out / "state" / "plural.json").read_text())
    assert state["stopped"] == r["stopped"] and state["finished"] is True
    printed = capsys.readouterr()
    assert "stopped: caps.task.api_calls=60 reached" in printed.out
    assert "stopping: caps.task.api_calls=60 reached" in printed.err


def test_resume_with_raised_cap_runs_the_task_to_its_budget(ray_local, simulator, tmp_path):
    sim = simulator(latency_ms=(1, 3))
    out = tmp_path / "run"
    stopped = capped_run(sim, out)["tasks"]["plural"]
    assert stopped["stopped"] is not None and stopped["queries"] < BUDGET
    paid = sim.stats.requests

    assert main(["resume", str(out), "--set", "caps.task.api_calls=100000"]) == 0
    summary = read_summary(out)
    r = summary["tasks"]["plural"]
    assert r["stopped"] is None
    assert r["finished"] is True
    assert r["queries"] == BUDGET
    assert r["test_score"] is not None
    history = read_history(out)
    assert [h["query"] for h in history if h["query"]] == list(range(1, BUDGET + 1))
    assert [h["step"] for h in history] == list(range(1, len(history) + 1))
    # It went on where it stopped: more calls, none repeated, all accounted for.
    assert sim.stats.requests > paid
    assert sim.stats.requests == r["api_calls"] == summary["usage"]["api_calls"]
    assert sim.stats.as_dict()["repeated_prompts"] == 0
    # Both sessions are in the run's log, in order: the stop, the resume, the end.
    text = (out / "logs" / "driver.log").read_text()
    marks = [text.index(m) for m in (" INFO started ", "stopping: caps.task.api_calls=60",
                                     "[plural] done: test=n/a", " INFO resumed ")]
    marks.append(text.rindex("[plural] done: test="))
    assert marks == sorted(marks), text


def test_run_usd_cap_is_never_exceeded_and_cost_is_reported(ray_local, simulator, tmp_path,
                                                           capsys):
    sim = simulator(latency_ms=(1, 3))
    out = tmp_path / "run"
    # $1 per token: one dev evaluation (20 calls of ~25 prompt tokens) costs several hundred
    # dollars, so a $2500 run cap admits a few evaluations over the two tasks, not 16.
    cap = 2500
    code = main(run_argv(sim, out, "prices.sim-model.prompt=1000000",
                         "prices.sim-model.completion=1000000", f"caps.run.usd={cap}",
                         tasks="plural,larger_number"))
    assert code == 3  # stopped by the cap
    summary = read_summary(out)
    usage = summary["usage"]
    assert isinstance(usage["usd"], float) and 0 < usage["usd"] <= cap
    expected = (usage["prompt_tokens"] + usage["completion_tokens"]) * 1.0
    assert abs(usage["usd"] - expected) < 1e-6
    assert set(summary["tasks"]) == {"plural", "larger_number"}
    for name, r in summary["tasks"].items():
        assert r["finished"] is True, name
        assert r["stopped"] is not None and r["stopped"].startswith(f"caps.run.usd={cap} reached"), (
            name, r["stopped"])
        assert isinstance(r["usd"], float), name
        assert r["usd"] == float(r["prompt_tokens"] + r["completion_tokens"]), name
        assert r["test_score"] is None and r["queries"] < BUDGET, name
    assert sum(r["queries"] for r in summary["tasks"].values()) >= 2
    assert abs(sum(r["usd"] for r in summary["tasks"].values()) - usage["usd"]) < 1e-6
    assert sim.stats.requests == usage["api_calls"]
    printed = capsys.readouterr()
    # The status line and the printed results carry the cost once prices are known.
    assert any("status:" in line and "$" in line for line in printed.err.splitlines())
    for name, r in summary["tasks"].items():
        assert f"${r['usd']:.4f}" in printed.out, name
    assert printed.out.count(f"stopped: caps.run.usd={cap} reached") == 2


def test_query_cap_counts_candidates_in_flight(ray_local, simulator, tmp_path):
    sim = simulator(latency_ms=(1, 3))
    out = tmp_path / "run"
    # batch 2 keeps two candidates in flight; a cap of 3 must not let a fourth start.
    assert main(run_argv(sim, out, "caps.task.queries=3", tasks="plural,larger_number")) == 3
    summary = read_summary(out)
    for name, r in summary["tasks"].items():
        assert r["queries"] == 3, (name, r)
        assert r["stopped"].startswith("caps.task.queries=3 reached (3 spent"), r["stopped"]
    history = read_history(out)
    assert len([h for h in history if h["query"]]) == 6
    assert all(h["dev_score"] is not None for h in history)


def test_token_cap_holds_while_tasks_share_it(ray_local, simulator, tmp_path):
    sim = simulator(latency_ms=(1, 3))
    out = tmp_path / "run"
    cap = 3000
    assert main(run_argv(sim, out, f"caps.run.prompt_tokens={cap}", "bo.batch_size=4",
                         tasks="plural,larger_number,last_item")) == 3
    summary = read_summary(out)
    assert 0 < summary["usage"]["prompt_tokens"] <= cap
    assert sim.stats.as_dict()["prompt_tokens"] == summary["usage"]["prompt_tokens"]
    stopped = [r["stopped"] for r in summary["tasks"].values() if r["stopped"]]
    assert stopped, "3 tasks x 8 queries x 20 calls need ~4x the cap: it must bind"
    assert all(s.startswith(f"caps.run.prompt_tokens={cap} reached") for s in stopped), stopped


def test_test_evaluation_is_skipped_when_it_would_cross_a_cap(ray_local, simulator, tmp_path):
    sim = simulator(latency_ms=(1, 3))
    out = tmp_path / "run"
    # Budget 2 with 20 dev calls each fits under 44 calls; the 5 test calls would not.
    assert main(run_argv(sim, out, "bo.budget=2", "bo.n_init=2", "caps.task.api_calls=44")) == 3
    r = read_summary(out)["tasks"]["plural"]
    assert r["queries"] == 2 and r["finished"] is True and r["test_score"] is None
    assert r["api_calls"] <= 44
    if r["api_calls"] == 2 * N_DEV:  # (an instruction generated twice is scored once)
        assert "the test evaluation needs ~5" in r["stopped"], r["stopped"]
    # Raising the cap on resume runs just the test evaluation.
    assert main(["resume", str(out), "--set", "caps.task.api_calls=100"]) == 0
    r2 = read_summary(out)["tasks"]["plural"]
    assert r2["stopped"] is None and r2["test_score"] is not None and r2["queries"] == 2
    assert r2["api_calls"] == r["api_calls"] + 5 == sim.stats.requests


def test_shared_cache_path_makes_a_repeated_run_free(ray_local, simulator, tmp_path):
    sim = simulator(latency_ms=(1, 3))
    cache = tmp_path / "shared" / "answers.sqlite"
    # Sobol points only (n_init = budget): both runs issue the very same candidates whatever
    # the timing. (With the GP, when one task finishes the other may keep more candidates in
    # flight, so its later proposals depend on which task finished first.)
    extra = (f"evaluator.cache_path={cache}", "bo.batch_size=2", "bo.budget=6", "bo.n_init=6")
    out1, out2 = tmp_path / "first", tmp_path / "second"
    assert main(run_argv(sim, out1, *extra, tasks="plural,larger_number")) == 0
    first = read_summary(out1)
    paid = sim.stats.requests
    assert paid > 0 and paid == first["usage"]["api_calls"]
    assert cache.is_file() and not (out1 / "cache.sqlite").exists()

    assert main(run_argv(sim, out2, *extra, tasks="plural,larger_number")) == 0
    second = read_summary(out2)
    assert sim.stats.requests == paid, "the second run paid for answers the cache holds"
    assert second["usage"]["api_calls"] == 0
    for name, r in second["tasks"].items():
        assert r["api_calls"] == 0 and r["prompt_tokens"] == 0, name
        assert r["queries"] == 6 and r["finished"] is True, name
        assert r["best_instruction"] == first["tasks"][name]["best_instruction"], name
        assert r["dev_score"] == first["tasks"][name]["dev_score"], name
        assert r["test_score"] == first["tasks"][name]["test_score"], name
    assert all(h["cached"] and h["api_calls"] == 0 for h in read_history(out2))


def test_caps_and_prices_from_the_command_line():
    """Model names hold dashes, so ``--set prices.MODEL.prompt=...`` must accept them."""
    from izray.config import load_config

    cfg = load_config(None, ["prices.gpt-4o-mini.prompt=0.15", "prices.sim-model.completion=2",
                             "caps.run.usd=1.5", "caps.task.api_calls=60",
                             "evaluator.model=gpt-4o-mini"])
    assert cfg.prices["gpt-4o-mini"].prompt == 0.15
    assert cfg.prices["sim-model"].completion == 2.0
    assert cfg.caps.run.usd == 1.5 and cfg.caps.task.api_calls == 60
    assert cfg.caps.task.usd is None and cfg.caps.run.api_calls is None


def test_printed_results_show_cost_and_why_a_task_stopped():
    from izray.report import format_results

    row = {"best_instruction": "Say it.", "dev_score": 0.5, "test_score": None, "queries": 3,
           "api_calls": 60, "prompt_tokens": 900, "completion_tokens": 60, "wall_s": 2.0}
    text = format_results({"tasks": {
        "priced": {**row, "usd": 1.23456, "stopped": "caps.run.usd=1 reached (1.2346)"},
        "unpriced": {**row, "usd": None, "stopped": None}}})
    priced, unpriced = text.split("unpriced  (instructzero)\n")
    assert "$1.2346" in priced and "stopped: caps.run.usd=1 reached" in priced
    assert "$" not in unpriced and "stopped" not in unpriced
