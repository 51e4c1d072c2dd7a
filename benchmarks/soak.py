"""Soak: runs against a faulty black box, SIGKILLed at random and resumed, both Ray modes.

    .venv/bin/python benchmarks/soak.py [--minutes N] [--kills K] [--modes local,cluster] \
        [--actors 1,4] [--quick]

Every scenario (Ray mode x evaluator actors) repeats runs until its share of ``--minutes``
is used (at least one run each). A run is 2 tasks on the simulated generator against the
black-box simulator on loopback, which injects 429s with mixed ``Retry-After`` forms
(seconds, HTTP dates, garbage, negative, ``inf``, ``1e400``, a day), 500s, hangs past the
client's timeout and malformed 200 bodies of every kind (truncated JSON, list/int/null
content, ``choices: []``, HTML). Each run's driver is SIGKILLed ``--kills`` times at random
moments once it has made progress (local mode: its process group, local Ray included;
cluster mode: the driver alone, as a lost ``ray job`` driver), then ``izray resume``d.

Per scenario it prints and writes (``benchmarks/results/soak.json``):

* ``lost_obs``: observations missing or told twice in ``history.jsonl`` (must be 0);
* ``repeated``: prompts the server answered (a good 200: paid) more than once, against
  ``lost_in_flight``, the calls izray reports as lost with their process (local mode);
* ``req_minus_calls``: server requests minus ``summary.json``'s ``api_calls`` (must be 0);
* ``longest_stall_s``: the longest time a live driver added no history line;
* ``resume_s``: time from ``izray resume`` to its first new history line (mean, max).

``--quick`` (CI): one run per scenario, 2 kills, Retry-After forms without the 120 s ones.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, machine, table, write_result

from izray.testing.simulator import MALFORMED_KINDS, RETRY_AFTER_FORMS, SimConfig, start_in_thread

BIN = Path(sys.executable).parent
TASKS = ("plural", "larger_number")
#: Retry-After forms clamped to RETRY_AFTER_MAX_S (120 s): left out of --quick.
HUGE_FORMS = ("inf", "1e400", "86400")


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


class RayHead:
    """A `ray start --head` cluster for the cluster-mode scenarios."""

    def __init__(self) -> None:
        self.temp = tempfile.mkdtemp(prefix="/tmp/izs-")
        gcs, dash = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        #: Clients of a `ray start` head authenticate with its token (~/.ray/auth_token).
        self.client_env = dict(env, RAY_AUTH_MODE="token")
        self.proc = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}", "--num-cpus=4",
             f"--dashboard-port={dash}", "--include-dashboard=false", f"--temp-dir={self.temp}",
             "--disable-usage-stats"], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.address = f"127.0.0.1:{gcs}"
        deadline = time.monotonic() + 120
        while subprocess.run([str(BIN / "ray"), "status", f"--address={self.address}"],
                             env=self.client_env, capture_output=True, check=False).returncode:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("soak: the ray head did not come up")
            time.sleep(2)

    def stop(self) -> None:
        """Kill this head's process tree (not `ray stop`, which stops every Ray here)."""
        import psutil

        try:
            procs = psutil.Process(self.proc.pid).children(recursive=True) + [
                psutil.Process(self.proc.pid)]
        except psutil.NoSuchProcess:
            procs = []
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=15)
        shutil.rmtree(self.temp, ignore_errors=True)


def _config(path: Path, base_url: str, actors: int, budget: int) -> Path:
    path.write_text(
        f"tasks:\n  names: [{', '.join(TASKS)}]\n  n_test: 5\n  n_dev: 10\n"
        "generator:\n  backend: sim\n"
        f"evaluator:\n  base_url: {base_url}\n  model: sim-model\n  concurrency: 8\n"
        f"  num_actors: {actors}\n  timeout_s: 3\n  max_attempts: 8\n"
        f"bo:\n  budget: {budget}\n  n_init: 4\n  batch_size: 3\n  stop_at_max: false\n")
    return path


def _lost_observations(out: Path, budget: int) -> int:
    records = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    lost = 0
    for task in TASKS:
        mine = [h for h in records if h["task"] == task]
        cands = sorted(h["candidate"] for h in mine)
        lost += len(set(range(len(mine))) ^ set(cands)) + (len(cands) - len(set(cands)))
        queries = [h["query"] for h in mine if h["query"]]
        lost += len(set(range(1, budget + 1)) ^ set(queries)) + (len(queries) - len(set(queries)))
    return lost


def one_run(work: Path, sim, mode: str, actors: int, kills: int, budget: int,
            rng: random.Random, env: dict) -> dict:
    """A run with ``kills`` SIGKILLs and resumes; its figures."""
    out = work / "run"
    cfg = _config(work / "run.yaml", sim.base_url, actors, budget)
    history = out / "history.jsonl"
    cmd = ["run", str(cfg), "--out", str(out)]
    stall = 0.0
    resume_s: list[float] = []
    killed = 0
    t0 = time.monotonic()
    while True:
        start_lines, t_start = _lines(history), time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "izray.cli", *cmd], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        last_n, last_t, first_seen = start_lines, None, False
        kill_at = None
        while proc.poll() is None:
            time.sleep(0.05)
            n, now = _lines(history), time.monotonic()
            if n != last_n:
                if not first_seen and cmd[0] == "resume":
                    resume_s.append(now - t_start)
                first_seen = True
                if last_t is not None:
                    stall = max(stall, now - last_t)
                last_n, last_t = n, now
                if killed < kills and kill_at is None:
                    kill_at = now + rng.uniform(0.0, 4.0)
            if kill_at is not None and now >= kill_at:
                if mode == "local":
                    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray
                else:
                    os.kill(proc.pid, signal.SIGKILL)  # the driver; detached actors live on
                proc.wait()
                killed += 1
                break
        else:
            err = proc.stderr.read()
            if proc.returncode not in (0, 3):  # 3: a task without a test score (faults)
                raise SystemExit(f"soak: izray {cmd[0]} exited {proc.returncode}: "
                                 f"{err.strip().splitlines()[-1] if err.strip() else ''}")
            if last_t is not None:
                stall = max(stall, time.monotonic() - last_t)
            break
        cmd = ["resume", str(out)]
    summary = json.loads((out / "summary.json").read_text())
    stats = sim.stats.as_dict()
    return {"kills": killed, "lost_obs": _lost_observations(out, budget),
            "repeated": stats["repeated_answers"],
            "lost_in_flight": summary["usage"].get("lost_in_flight", 0),
            "req_minus_calls": stats["requests"] - summary["usage"]["api_calls"],
            "requests": stats["requests"], "injected": {
                k: stats[k] for k in ("injected_429", "injected_500", "injected_timeout",
                                      "injected_malformed")},
            "longest_stall_s": round(stall, 1), "resume_s": [round(x, 1) for x in resume_s],
            "wall_s": round(time.monotonic() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="soak time over all scenarios")
    p.add_argument("--kills", type=int, default=3, help="driver kills per run")
    p.add_argument("--modes", default="local,cluster")
    p.add_argument("--actors", default="1,4", help="evaluator actors per scenario")
    p.add_argument("--budget", type=int, default=12, help="paid queries per task per run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="CI: one run per scenario, 2 kills")
    p.add_argument("--out", help="result JSON (default benchmarks/results/soak.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.minutes, args.kills = 0.0, 2
    modes = [m for m in args.modes.split(",") if m]
    if set(modes) - {"local", "cluster"}:
        p.error("--modes: choose from local, cluster")
    actor_counts = [int(a) for a in args.actors.split(",") if a]
    forms = tuple(f for f in RETRY_AFTER_FORMS if not (args.quick and f in HUGE_FORMS))
    scenarios = [(m, a) for m in modes for a in actor_counts]
    share = args.minutes * 60.0 / len(scenarios)
    rng = random.Random(args.seed)
    rows, t_all = [], time.monotonic()
    base_env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "OPENAI_API_KEY")}
    for mode in modes:
        head = RayHead() if mode == "cluster" else None
        try:
            env = dict(head.client_env, RAY_ADDRESS=head.address) if head else base_env
            for actors in actor_counts:
                runs, t_scn = [], time.monotonic()
                while not runs or time.monotonic() - t_scn < share:
                    sim = start_in_thread(SimConfig(
                        latency_ms=(50, 300), fail_429=0.04, retry_after_mix=forms,
                        fail_500=0.03, timeout=0.01, hang_s=6.0, malformed=0.03,
                        malformed_kinds=MALFORMED_KINDS, seed=rng.randrange(2**31)))
                    try:
                        with tempfile.TemporaryDirectory(prefix="izray-soak-") as work:
                            runs.append(one_run(Path(work), sim, mode, actors, args.kills,
                                                args.budget, rng, env))
                    finally:
                        sim.stop()
                    print(f"  {mode} x{actors} run {len(runs)}: {runs[-1]}", flush=True)
                rows.append({
                    "mode": mode, "actors": actors, "runs": len(runs),
                    "kills": sum(r["kills"] for r in runs),
                    "lost_obs": sum(r["lost_obs"] for r in runs),
                    "repeated": sum(r["repeated"] for r in runs),
                    "lost_in_flight": sum(r["lost_in_flight"] for r in runs),
                    "req_minus_calls": sum(r["req_minus_calls"] for r in runs),
                    "requests": sum(r["requests"] for r in runs),
                    "longest_stall_s": max(r["longest_stall_s"] for r in runs),
                    "resume_mean_s": round(sum(sum(r["resume_s"]) for r in runs)
                                           / max(1, sum(len(r["resume_s"]) for r in runs)), 1),
                    "resume_max_s": max([x for r in runs for x in r["resume_s"]] or [0.0]),
                    "details": runs})
        finally:
            if head:
                head.stop()
    cols = ["mode", "actors", "runs", "kills", "lost_obs", "repeated", "lost_in_flight",
            "req_minus_calls", "requests", "longest_stall_s", "resume_mean_s", "resume_max_s"]
    print(table(rows, cols))
    wall = time.monotonic() - t_all
    data = {"machine": machine(), "wall_s": round(wall, 1), "args": vars(args),
            "retry_after_forms": list(forms), "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(data, indent=1) + "\n")
    else:
        write_result("soak", data)
    bad = [r for r in rows if r["lost_obs"] or r["req_minus_calls"]
           or r["repeated"] > r["lost_in_flight"]]
    print(f"soak: {len(rows)} scenarios, wall {wall:.0f} s; "
          + ("invariants hold" if not bad else f"INVARIANTS BROKEN in {len(bad)} scenario(s)"))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
