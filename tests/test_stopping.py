"""Stopping safely: SIGTERM/SIGINT (``ray job stop``, Ctrl-C) leave a consistent run that
``izray resume`` continues without paying twice, and no actor of the run behind.

In process (the driver in pytest's main thread, a timer thread sends the signal) and through
``ray job stop`` on a ``ray start --head`` cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from izray.cli import main
from izray.errors import EXIT_INTERRUPTED
from izray.stopping import RAY_JOB_ENV, StopRequest, grace_seconds

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _queries(out: Path) -> int:
    path = out / "history.jsonl"
    if not path.is_file():
        return 0
    return sum(1 for line in path.read_text().splitlines()
               if line.strip() and json.loads(line).get("query") is not None)


def _wait_for_queries(out: Path, n: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while _queries(out) < n:
        assert time.monotonic() < deadline, f"no {n} queries in {out} after {timeout} s"
        time.sleep(0.2)


# ------------------------------------------------------------------------------------ units


def test_a_second_signal_asks_for_an_immediate_stop():
    stop = StopRequest()
    stop.handle(signal.SIGINT, None)
    assert (stop.requested, stop.immediate, stop.name) == (True, False, "SIGINT")
    stop.handle(signal.SIGTERM, None)
    assert stop.immediate and stop.name == "SIGINT"  # the first signal names the stop


def test_a_signal_while_starting_raises_at_once():
    from izray.errors import Interrupted

    stop = StopRequest()
    stop.raising = True
    with pytest.raises(Interrupted, match="while starting"):
        stop.handle(signal.SIGTERM, None)


def test_install_and_restore_put_the_old_handlers_back():
    before = signal.getsignal(signal.SIGTERM)
    stop = StopRequest()
    stop.install()
    stop.install()  # again, as after ray.init: the original is still what restore puts back
    assert signal.getsignal(signal.SIGTERM) == stop.handle
    stop.restore()
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.parametrize(("env", "grace"), [
    ({}, 20.0),
    ({RAY_JOB_ENV: "{}"}, 1.0),  # ray job stop: SIGKILL after 3 s; 2 s kept for the cleanup
    ({RAY_JOB_ENV: "{}", "RAY_JOB_STOP_WAIT_TIME_S": "12"}, 10.0),
    ({RAY_JOB_ENV: "{}", "RAY_JOB_STOP_WAIT_TIME_S": "1"}, 0.0),
    ({RAY_JOB_ENV: "{}", "RAY_JOB_STOP_WAIT_TIME_S": "x"}, 1.0),
])
def test_grace_fits_inside_ray_job_stop(env, grace):
    assert grace_seconds(20.0, env) == grace


def test_bad_stop_grace_is_a_config_error():
    from izray.config import config_from_dict
    from izray.errors import ConfigError

    with pytest.raises(ConfigError, match="ray.stop_grace_s"):
        config_from_dict({}, ["ray.stop_grace_s=-1"])


# ------------------------------------------------------------------------ in process, real Ray


BUDGET = 10  # per task: long enough to stop mid-run, short enough for CI


def _sim_args(sim, out: Path, *extra: str) -> list[str]:
    args = ["run", "--tasks", "plural,larger_number", "--out", str(out)]
    for s in ("generator.backend=sim", f"evaluator.base_url={sim.base_url}",
              "evaluator.model=sim-model", f"bo.budget={BUDGET}", "bo.n_init=4", "bo.batch_size=3",
              "tasks.n_test=10", "bo.stop_at_max=false", *extra):
        args += ["--set", s]
    return args


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_run_consistently_and_resume_pays_nothing_twice(
        ray_local, simulator, tmp_path, capsys, signum):
    sim = simulator(latency_ms=(50, 100))
    out = tmp_path / "run"

    def send():
        _wait_for_queries(out, 3)
        os.kill(os.getpid(), signum)

    # What the handlers were before the run: the default, or SIG_IGN when pytest was
    # started in the background by a shell without job control.
    before = signal.getsignal(signal.SIGINT)
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    code = main(_sim_args(sim, out))
    sender.join(timeout=5)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_INTERRUPTED, err[-5:]
    name = signal.Signals(signum).name
    assert err[-1].startswith(f"izray: stopped by {name}: ") and "izray resume" in err[-1], err[-1]
    assert not any("Traceback" in line for line in err)
    # The handlers are the ones from before the run again.
    assert signal.getsignal(signal.SIGINT) is before

    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] == name
    assert not all(r["finished"] for r in summary["tasks"].values())
    stopped_at = summary["usage"]["queries"]
    assert 3 <= stopped_at < 2 * BUDGET
    # What the summary counts is what the server saw (the calls in flight finished within
    # the grace period and were journaled).
    assert sim.stats.requests == summary["usage"]["api_calls"]

    assert main(["resume", str(out)]) == 0
    final = json.loads((out / "summary.json").read_text())
    assert "interrupted" not in final
    assert all(r["finished"] and r["queries"] == BUDGET for r in final["tasks"].values())
    assert sim.stats.requests == sum(r["api_calls"] for r in final["tasks"].values())
    assert sim.stats.as_dict()["repeated_prompts"] == 0  # nothing was paid twice


# ----------------------------------------------------------------------- ray job stop, cluster


def _ray(head, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], env=head.client_env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _alive_actors(head) -> list[dict]:
    res = _ray(head, "list", "actors", "--address", head.dashboard, "--filter", "state=ALIVE",
               "--format", "json", "--limit", "1000")
    assert res.returncode == 0, res.stderr[-2000:]
    if res.stdout.startswith("No resource"):  # Ray's answer for an empty list
        return []
    return json.loads(res.stdout)


RUN_ACTORS = ("EvaluatorActor", "GeneratorActor", "ServerActor")

STANDING_REQUEST = """
import json, ray
from ray._private.ray_constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
from ray.experimental.internal_kv import _internal_kv_get
ray.init(address="{gcs}", logging_level="ERROR")
raw = _internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL)
print(json.dumps(None if raw is None else json.loads(raw)))
"""


def _standing_request(head) -> list[dict] | None:
    """The cluster's standing autoscaler request (``request_resources``, the v1 channel),
    read by a driver of its own (this process may be connected to another cluster)."""
    res = subprocess.run([sys.executable, "-c", STANDING_REQUEST.format(gcs=head.gcs)],
                         env=head.client_env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _submit(head, sid: str, *cmd: str) -> None:
    for _ in range(8):
        res = _ray(head, "job", "submit", "--address", head.dashboard, "--working-dir",
                   str(REPO), "--submission-id", sid, "--no-wait", "--", *cmd)
        if "No available agent to submit job" not in res.stderr:  # Ray's transient refusal
            break
        time.sleep(15)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


def _wait_job(head, sid: str, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _ray(head, "job", "status", "--address", head.dashboard, sid).stdout
        for final in ("succeeded", "failed", "stopped"):  # "Job 'ID' was stopped"
            if final in status.lower():
                return final.upper()
        time.sleep(2)
    pytest.fail(f"job {sid} did not end in {timeout} s")


@pytest.mark.slow
def test_ray_job_stop_leaves_no_actor_and_resume_continues(ray_head, simulator, tmp_path):
    from conftest import SECRET

    sim = simulator(api_key=SECRET, latency_ms=(100, 200))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "tasks:\n  names: [plural, larger_number]\n  n_test: 10\n"
        # An elastic pool on the head's 2 logical GPUs, which asks the autoscaler for 3
        # actors' worth (one more than there is): the stop must withdraw that request.
        "generator:\n  backend: sim\n  num_actors: auto\n  max_actors: 3\n  num_gpus: 1\n"
        "  num_cpus: 0.5\n"
        f"evaluator:\n  base_url: {sim.base_url}\n  model: sim-model\n"
        "bo:\n  budget: 24\n  n_init: 4\n  batch_size: 2\n  stop_at_max: false\n"
        "  racing: 0\n")
    out = tmp_path / "results"
    run_id = f"izray-stop-{os.getpid()}"
    head = ray_head
    # Actors of earlier tests on this shared cluster (e.g. a SIGKILLed driver's detached
    # evaluators, which live on by design) are not this run's.
    earlier = {a["actor_id"] for a in _alive_actors(head)}
    _submit(head, run_id, "izray", "run", str(cfg), "--out", str(out))
    _wait_for_queries(out, 4, timeout=300)
    during = [a.get("class_name") for a in _alive_actors(head) if a["actor_id"] not in earlier]
    assert "EvaluatorActor" in during and during.count("GeneratorActor") == 2, during
    assert _standing_request(head) == [{"GPU": 1.0, "CPU": 0.5}] * 3
    stop = _ray(head, "job", "stop", "--address", head.dashboard, run_id)
    assert stop.returncode == 0, stop.stderr[-2000:]
    assert _wait_job(head, run_id) == "STOPPED"

    logs = _ray(head, "job", "logs", "--address", head.dashboard, run_id).stdout
    assert "izray: stopped by SIGTERM" in logs, logs[-3000:]
    assert "*** SIGTERM received" not in logs and "PC: @" not in logs, logs[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] == "SIGTERM"
    assert sim.stats.requests == summary["usage"]["api_calls"]

    # No actor of the run is left (the rate limiter is the endpoint's, shared by runs, and
    # there is none here: no rpm).
    deadline = time.monotonic() + 30
    while True:
        left = [a for a in _alive_actors(head)
                if a.get("class_name") in RUN_ACTORS and a["actor_id"] not in earlier]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not left, left
    assert _standing_request(head) == []  # the GPU nodes may scale down again

    resume_id = f"{run_id}-resume"
    _submit(head, resume_id, "izray", "resume", str(out))
    assert _wait_job(head, resume_id) == "SUCCEEDED", _ray(
        head, "job", "logs", "--address", head.dashboard, resume_id).stdout[-3000:]
    final = json.loads((out / "summary.json").read_text())
    assert all(r["finished"] and r["queries"] == 24 for r in final["tasks"].values())
    assert sim.stats.requests == sum(r["api_calls"] for r in final["tasks"].values())
    assert sim.stats.as_dict()["repeated_prompts"] == 0
