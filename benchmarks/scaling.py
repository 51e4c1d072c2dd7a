"""Scaling: T in {1, 4, 16} tasks with the same per-task budget, and the reference loop.

    .venv/bin/python benchmarks/scaling.py [--quick] [--modes sim,cpu]

For each T, izray's driver optimizes T tasks at once over one generator pool and one
evaluator pool against the black-box simulator (its own process; latency 300-900 ms; an
rpm limit answered with 429). Reported per T: wall time, queries/s and the busy fraction of
each resource:

* ``api``: requests/min achieved against the configured limit;
* ``generator``: time the generator actors spent generating / (wall x actors);
* ``bo_cpu``: CPU-seconds of BO proposals / (wall x CPUs available to proposal tasks);
* ``driver``: time the driver's loop spent coordinating (not waiting) / wall.

Side by side, the reference loop's way of working on the same actors: one candidate at a
time, its 20 dev calls concurrently, serial generation, the proposal in the loop. Its
throughput does not depend on T (it does tasks one after another), so it is measured on a
few tasks and compared with izray at T=16 (``speedup_vs_reference``).

Generator modes:

* ``sim``: the simulated GPU generator (``izray.generation.sim_backend``), whose batch latency
  follows ``t(b) = 0.05 + 64 x (0.025 + 0.0002 b)`` s: vLLM decoding a ~7B model on one
  A100-class GPU, ~25 ms per step at small batch plus ~0.2 ms per extra sequence (public vLLM
  figures, rounded). This measures the orchestration apart from this machine's two cores.
* ``cpu``: the real vLLM CPU engine on the small model (Gemma 3 270M), 32 new tokens. Here
  the two CPU cores are the generator.

Tasks are copies of the built-in tasks (as JSONL) so the simulator's answers depend on the
instruction. Writes ``benchmarks/results/scaling.json`` with ``ratio_t16_t1``,
``bottleneck``, ``bottleneck_utilization`` and ``speedup_vs_reference`` (sim mode) and all
rows of every mode.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import SimulatorProcess, machine, table, write_result

from izray.bo import ProposalSettings, TaskOptimizer
from izray.config import config_from_dict
from izray.driver import Driver, prepare_tasks
from izray.evaluation import template_for
from izray.generation import GenerationRequest, induction_text
from izray.generation import sim_backend as simgen
from izray.report import RunDir
from izray.runtime.session import start_pools
from izray.softprompt import SoftPromptProjection, stable_seed
from izray.tasks import load_builtin_task, score

KINDS = ("plural", "larger_number", "first_letter", "last_item")
RAY_CPUS = 4


def write_tasks(data: Path, n: int) -> list[str]:
    """``n`` JSONL task copies of the built-in tasks."""
    names = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        task = load_builtin_task(kind)
        name = f"{kind}_{i}"
        with open(data / f"{name}.jsonl", "w") as fh:
            fh.writelines(json.dumps({"input": ex.input, "outputs": list(ex.answers)}) + "\n" for ex in task.pool)
        with open(data / f"{name}.test.jsonl", "w") as fh:
            fh.writelines(json.dumps({"input": ex.input, "outputs": list(ex.answers)}) + "\n" for ex in task.test)
        names.append(name)
    return names


def base_overrides(mode: str, sim: SimulatorProcess, rpm: float, budget: int, data: Path,
                   names: list[str]) -> list[str]:
    n_init = max(2, budget // 4)
    batch = 5 if mode == "sim" else 3
    out = [f"tasks.names=[{','.join(names)}]", f"tasks.data_dir={data}", "tasks.n_test=10",
           f"evaluator.base_url={sim.base_url}", "evaluator.model=sim-model",
           "evaluator.api=completions", f"evaluator.rpm={rpm}", "evaluator.num_actors=2",
           "evaluator.concurrency=64", "evaluator.max_tokens=8",
           f"bo.budget={budget}", f"bo.n_init={n_init}", f"bo.batch_size={batch}"]
    if mode == "sim":
        out += ["generator.backend=sim", "generator.num_cpus=0"]
    else:
        out += ["generator.backend=vllm", "generator.max_new_tokens=32",
                "generator.max_model_len=512", "generator.num_cpus=1"]
    return out


def proposal_cpus(mode: str) -> int:
    reserved = 0.2 + (1.0 if mode == "cpu" else 0.0)  # evaluators (2 x 0.1) + generator
    return max(1, math.floor(RAY_CPUS - reserved))


def run_izray(session, mode: str, overrides: list[str], out: Path, sim: SimulatorProcess,
              rpm: float, t: int) -> dict:
    cfg = config_from_dict({}, overrides)
    tasks = prepare_tasks(cfg)
    rundir = RunDir(out)
    driver = Driver(cfg, rundir, tasks)
    driver.attach(session.generators, session.evaluators, session.info, session.call_settings)
    gen_before = sum(s["busy_s"] for s in session.generators.stats())
    sim.reset()
    t0 = time.monotonic()
    summary = driver.run()
    wall = time.monotonic() - t0
    driver.close()
    gen_busy = sum(s["busy_s"] for s in session.generators.stats()) - gen_before
    stats = sim.stats()
    queries = sum(r["queries"] for r in summary["tasks"].values())
    busy = {
        "api": (60.0 * (stats["ok"] + stats["injected_500"]) / wall) / rpm,  # admitted
        "generator": gen_busy / (wall * session.generators.size),
        "bo_cpu": driver.proposal_seconds / (wall * proposal_cpus(mode)),
        "driver": driver.busy_s / wall,
    }
    bottleneck = max(busy, key=busy.get)
    return {"mode": mode, "T": t, "wall_s": round(wall, 1), "queries": queries,
            "queries_per_s": queries / wall, "api_calls": stats["requests"],
            "rate_limited": stats["rate_limited"], "proposals": driver.proposals,
            **{f"busy_{k}": v for k, v in busy.items()}, "bottleneck": bottleneck,
            "bottleneck_utilization": busy[bottleneck],
            "mean_best_dev": float(np.mean([r["dev_score"] or 0.0
                                            for r in summary["tasks"].values()]))}


def run_reference(session, overrides: list[str]) -> dict:
    """The reference loop: one candidate at a time, serial generation, proposal in the loop."""
    cfg = config_from_dict({}, overrides)
    tasks = prepare_tasks(cfg)
    gen = session.generators.slots[0].actor
    ev = session.evaluators.slots[0].actor
    template = template_for(cfg.evaluator)
    sp = cfg.softprompt
    settings = ProposalSettings(num_restarts=cfg.bo.num_restarts, raw_samples=cfg.bo.raw_samples,
                                maxiter=cfg.bo.maxiter)
    queries, calls = 0, 0
    t0 = time.monotonic()
    for task, splits in tasks:
        opt = TaskOptimizer(dim=sp.dim, budget=cfg.bo.budget, n_init=cfg.bo.n_init,
                            batch_size=1, seed=stable_seed(cfg.seed, task.name, "bo"),
                            settings=settings)
        proj = SoftPromptProjection.create(sp.dim, sp.n_tokens, session.info.hidden,
                                           session.info.embed_std, sp.scale,
                                           seed=stable_seed(cfg.seed, task.name, "projection"))
        text = induction_text(splits.exemplars, cfg.generator.cue)
        while not opt.done:
            (cand,) = opt.ask(1)
            req = GenerationRequest("ref", proj(np.asarray(cand.z, dtype=np.float32)), text)
            instruction = ray.get(gen.generate.remote([req]))[0].instruction
            prompts = [template.render(instruction, ex.input) for ex in splits.dev]
            outcomes = ray.get(ev.evaluate.remote(prompts))
            calls += sum(o.attempts for o in outcomes)
            per = [score(task.metric, o.text or "", ex.answers)
                   for o, ex in zip(outcomes, splits.dev, strict=True)]
            opt.tell(cand.id, instruction, float(np.mean(per)), per)
            queries += 1
    wall = time.monotonic() - t0
    return {"tasks": len(tasks), "queries": queries, "wall_s": round(wall, 1),
            "queries_per_s": queries / wall, "api_calls": calls}


def run_mode(mode: str, quick: bool, tmp: Path) -> dict:
    ts = (1, 4, 16)
    if mode == "sim":
        budget, rpm, ref_tasks = (10, 6000, 1) if quick else (30, 6000, 2)
    else:
        budget, rpm, ref_tasks = (4, 6000, 1) if quick else (6, 6000, 1)
    sim = SimulatorProcess("--latency-ms", "300-900", "--rpm", str(rpm), "--noise", "0.1")
    data = tmp / f"data-{mode}"
    data.mkdir()
    names = write_tasks(data, max(ts))
    try:
        first = base_overrides(mode, sim, rpm, budget, data, names[:1])
        session = start_pools(config_from_dict({}, first), tmp)
        rows = []
        for t in ts:
            row = run_izray(session, mode, base_overrides(mode, sim, rpm, budget, data, names[:t]),
                            tmp / f"{mode}-T{t}", sim, rpm, t)
            rows.append(row)
            print(f"  {mode} T={t}: {row['queries']} queries in {row['wall_s']} s, "
                  f"bottleneck {row['bottleneck']} {row['bottleneck_utilization']:.2f}", flush=True)
        sim.reset()
        ref = run_reference(session, base_overrides(mode, sim, rpm, budget, data,
                                                    names[:ref_tasks]))
        print(f"  {mode} reference loop: {ref['queries']} queries in {ref['wall_s']} s", flush=True)
        session.shutdown()
    finally:
        sim.stop()
    t16 = rows[-1]
    return {"rows": rows, "reference": ref, "budget_per_task": budget, "rpm_limit": rpm,
            "ratio_t16_t1": t16["queries_per_s"] / rows[0]["queries_per_s"],
            "bottleneck": t16["bottleneck"],
            "bottleneck_utilization": t16["bottleneck_utilization"],
            "speedup_vs_reference": t16["queries_per_s"] / ref["queries_per_s"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small budgets, sim mode only (< 3 min)")
    p.add_argument("--modes", default=None, help="comma-separated: sim,cpu (default: sim "
                   "with --quick, sim,cpu otherwise)")
    args = p.parse_args()
    modes = (args.modes or ("sim" if args.quick else "sim,cpu")).split(",")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("izray").setLevel(logging.WARNING)
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, logging_level=logging.WARNING)
    results = {}
    with tempfile.TemporaryDirectory(prefix="izray-scaling-") as tmp:
        for mode in modes:
            print(f"mode {mode}:", flush=True)
            results[mode] = run_mode(mode, args.quick, Path(tmp))
    ray.shutdown()
    cols = ["mode", "T", "wall_s", "queries", "queries_per_s", "busy_api", "busy_generator",
            "busy_bo_cpu", "busy_driver", "bottleneck"]
    print(table([r for m in results.values() for r in m["rows"]], cols))
    for mode, r in results.items():
        print(f"{mode}: T16/T1 throughput {r['ratio_t16_t1']:.1f}x, reference "
              f"{r['reference']['queries_per_s']:.3f} q/s -> speedup at T=16 "
              f"{r['speedup_vs_reference']:.1f}x, bottleneck at T=16: {r['bottleneck']} "
              f"{r['bottleneck_utilization']:.2f}")
    head = results.get("sim") or next(iter(results.values()))
    out = {"machine": machine(), "quick": args.quick, "modes": results,
           "sim_generator": {"overhead_s": simgen.OVERHEAD_S, "per_token_s": simgen.PER_TOKEN_S,
                             "per_seq_token_s": simgen.PER_SEQ_TOKEN_S, "max_new_tokens": 64,
                             "source": "vLLM decoding a ~7B model on one A100-class GPU, "
                                       "public figures, rounded"},
            "ratio_t16_t1": head["ratio_t16_t1"], "bottleneck": head["bottleneck"],
            "bottleneck_utilization": head["bottleneck_utilization"],
            "speedup_vs_reference": head["speedup_vs_reference"],
            "targets": {"bottleneck_utilization": ">= 0.9 at T=16, not the driver",
                        "speedup_vs_reference": ">= 10 at T=16"}}
    print(f"wrote {write_result('scaling', out)}")


if __name__ == "__main__":
    main()
