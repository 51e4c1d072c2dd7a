"""``izray validate``: the checks ``izray run`` makes before it spends, without starting
anything, and an upper-bound estimate that a real run then stays under."""

from __future__ import annotations

import json
import re

import pytest

from izray.app import run_config
from izray.cli import main
from izray.config import config_from_dict
from izray.validate import estimate

SETS = ["tasks.names=[plural, larger_number]", "generator.backend=sim", "evaluator.model=sim-model",
        "bo.budget=8", "bo.n_init=4", "bo.batch_size=2", "tasks.n_test=10",
        "bo.stop_at_max=false", "evaluator.rpm=600", "evaluator.tpm=200000",
        "prices.sim-model.prompt=0.15", "prices.sim-model.completion=0.6"]


def _argv(cmd: str, sim, *extra: str, out=None) -> list[str]:
    argv = [cmd, *(["--out", str(out)] if out else [])]
    for s in (*SETS, f"evaluator.base_url={sim.base_url}", *extra):
        argv += ["--set", s]
    return argv


def _numbers(line: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*\.?\d*", line)]


def test_validate_estimates_an_upper_bound_that_the_real_run_stays_under(
        ray_local, simulator, tmp_path, capsys):
    sim = simulator(latency_ms=(1, 3))
    out = tmp_path / "run"
    assert main(_argv("validate", sim, out=out)) == 0
    printed = capsys.readouterr().out
    assert not out.exists()  # nothing created
    assert sim.stats.requests == 0  # nothing paid: only GET /models
    assert "black box: " in printed and "model sim-model served" in printed
    rows = {line.split()[0]: _numbers(line) for line in printed.splitlines()
            if line.split() and line.split()[0] in ("plural", "larger_number", "total")}
    # dev 20 x budget 8 + test 10, per task
    assert rows["plural"][:3] == [20, 10, 8 * 20 + 10]
    total_requests, prompt_est, completion_max, usd_est = rows["total"][:4]
    assert total_requests == 2 * 170
    assert usd_est == pytest.approx((prompt_est * 0.15 + completion_max * 0.6) / 1e6, abs=1e-4)
    hours = float(re.search(r"time: ([\d.]+) h at rpm 600", printed).group(1))
    assert hours == pytest.approx(340 / (600 * 0.98) / 60, abs=0.01)

    summary = run_config(config_from_dict({}, [*SETS, f"evaluator.base_url={sim.base_url}"]), out)
    usage = summary["usage"]
    assert usage["api_calls"] <= total_requests
    assert usage["prompt_tokens"] <= prompt_est and usage["completion_tokens"] <= completion_max
    assert usage["usd"] <= usd_est


def test_estimate_counts_references_and_rescoring():
    base = ["bo.budget=10", "bo.n_init=4", "tasks.n_test=5", "tasks.names=[larger_number]"]
    plain = estimate(config_from_dict({}, base)).tasks[0]
    more = estimate(config_from_dict({}, [
        *base, "bo.rescore_top_k=2",
        'tasks.reference_instructions={"larger_number": ["Pick the larger number."]}'])).tasks[0]
    assert plain.requests == 10 * 20 + 5
    assert more.requests == plain.requests + 2 * 20 + (20 + 5)
    assert more.prompt_tokens > plain.prompt_tokens
    assert plain.usd is None  # no price for the embedded model


@pytest.mark.parametrize(("extra", "needle"), [
    (["evaluator.model=gpt-nope"], "model 'gpt-nope' is not served"),
    (["tasks.names=[no_such_task]"], "task 'no_such_task'"),
    (["evaluator.base_url=http://127.0.0.1:9/v1"], "cannot reach http://127.0.0.1:9/v1"),
])
def test_validate_fails_in_one_line_like_run(simulator, tmp_path, capsys, extra, needle):
    sim = simulator()
    assert main(_argv("validate", sim, *extra, out=tmp_path / "r")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("izray: error:") and needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_validate_checks_the_key(simulator, tmp_path, capsys, monkeypatch):
    sim = simulator(api_key="sk-right")
    monkeypatch.setenv("IZRAY_TEST_KEY", "sk-wrong")
    assert main(_argv("validate", sim, "evaluator.api_key_env=IZRAY_TEST_KEY")) == 2
    err = capsys.readouterr().err
    assert "izray: error:" in err and "sk-wrong" not in err
    monkeypatch.setenv("IZRAY_TEST_KEY", "sk-right")
    assert main(_argv("validate", sim, "evaluator.api_key_env=IZRAY_TEST_KEY")) == 0
    printed = capsys.readouterr().out
    assert "key from $IZRAY_TEST_KEY accepted" in printed and "sk-right" not in printed


def test_validate_refuses_an_out_dir_a_run_would_refuse(simulator, tmp_path, capsys):
    sim = simulator()
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    assert main(_argv("validate", sim, out=full)) == 2
    assert "is not empty" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"seed": 99}))
    assert main(_argv("validate", sim, out=run)) == 2
    assert "holds a run with a different config" in capsys.readouterr().err


def test_validate_checks_a_served_generator(simulator, capsys):
    sim = simulator()  # an OpenAI-compatible server: it lists its models as vLLM would
    served = ["generator.backend=served", f"generator.base_url={sim.base_url}",
              "generator.model=gemma3-270m"]
    assert main(_argv("validate", sim, *served)) == 0
    assert "generator: http://127.0.0.1:" in capsys.readouterr().out
    assert main(_argv("validate", sim, *served, "generator.served_model=vicuna")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("izray: error: generator.served_model:") and "vicuna" in err
    assert main(_argv("validate", sim, "generator.backend=served",
                      "generator.base_url=http://127.0.0.1:9/v1")) == 2
    assert "the generator server http://127.0.0.1:9/v1 did not answer" in capsys.readouterr().err
    assert sim.stats.requests == 0


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert re.fullmatch(r"izray \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)
