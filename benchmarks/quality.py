"""Quality: InstructZero against Uniform and APE at the same paid budget, with statistics.

Usage::

    .venv/bin/python benchmarks/quality.py [--quick] [--config FILE] [--data-dir DIR]
        [--tasks a,b] [--strategies instructzero,uniform,ape] [--seeds N] [--budget N]
        [--landscape real|sim] [--out DIR] [--work DIR] [--set KEY=VALUE ...]
        [--variant "LABEL=STRATEGY KEY=VALUE ..." ...] [--reference LABEL]

Every strategy x seed is one ``izray run`` (all tasks of the run at once) through the real
command line, in its own process; all runs share one response cache, so an instruction two
strategies both find is paid once. Same tasks, splits, exemplars, dev and test sets, black box
and budget for all strategies; only ``strategy`` differs. ``--variant`` adds an arm that is
a strategy with its own overrides (an ablation: ``--variant "iz-paper=instructzero
bo.surrogate=ic"``); arms are compared with ``--reference`` (default ``instructzero``).

* ``--landscape real`` (default): the embedded models on this machine (Gemma 3 270M writes
  instructions on vLLM's CPU engine and answers them through the embedded vLLM server), or
  whatever generator / black box ``--config`` names (a GPU + API run uses the same script).
* ``--landscape sim``: the simulated generator's ``sim-hard`` landscape and the black-box
  simulator in ``--landscape hard`` mode (:mod:`izray.testing.landscape`); its properties are
  measured and written too.

Writes into ``--out`` (default ``benchmarks/results/quality-LANDSCAPE[-quick]/``):
``quality.json`` (``rows``, ``summary``, ``machine``, ``landscape`` and the settings),
``quality.md`` (the tables) and ``quality.png`` (best-so-far dev score against paid queries).
Run directories go to ``--work`` (default ``runs/quality-LANDSCAPE[-quick]/``); a benchmark
that was interrupted continues its unfinished runs when started again with the same
arguments.

``api_calls`` in the rows is the number of black-box prompts a run needed (dev evaluations,
the test evaluation): what it would pay on its own without retries. The shared cache only
changes who pays; ``paid_api_calls`` is what the run actually sent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _common import SimulatorProcess, machine

from izray.analysis import markdown_table, read_run, summarize
from izray.reporting import format_markdown, load_report
from izray.reporting.plots import curves as report_curves
from izray.reporting.plots import write_plot
from izray.search import STRATEGIES

#: The shared Instruction Induction tasks on which the embedded pair's dev scores vary at all
#: across random soft prompts (``--screen``, 2026-12-01: these 6 of 24; every candidate of
#: the other 18 scored 0). A flat task measures nothing.
REAL_TASKS = ("cause_and_effect", "rhymes", "informal_to_formal", "translation_en-de",
              "larger_animal", "translation_en-fr")
#: ``--screen``: uniform soft prompts, small budget, every task of the data directory.
SCREEN = {"seed": 100, "budget": 10,
          "sets": ["tasks.n_dev=10", "tasks.n_test=10", "bo.n_init=10", "bo.batch_size=4",
                   "generator.max_new_tokens=48"]}
SIM_TASKS = ("plural", "first_letter", "larger_number", "smaller_number", "last_item",
             "first_item", "reverse_word", "add_one")

#: Per landscape: (full, quick) settings.
PRESETS = {
    "real": {
        "full": {"tasks": REAL_TASKS, "seeds": 2, "budget": 30,
                 "sets": ["tasks.n_dev=10", "tasks.n_test=50", "bo.n_init=10",
                          "bo.batch_size=4", "generator.max_new_tokens=48"]},
        "quick": {"tasks": REAL_TASKS[:2], "seeds": 1, "budget": 6,
                  "sets": ["tasks.n_dev=5", "tasks.n_test=10", "bo.n_init=4",
                           "bo.batch_size=3", "generator.max_new_tokens=32"]},
    },
    "sim": {
        "full": {"tasks": SIM_TASKS, "seeds": 5, "budget": 150,
                 "sets": ["bo.n_init=25", "bo.batch_size=5", "tasks.n_test=50"]},
        "quick": {"tasks": SIM_TASKS[:4], "seeds": 2, "budget": 40,
                  "sets": ["bo.n_init=10", "bo.batch_size=5", "tasks.n_test=50"]},
    },
}
#: The simulated generator and black box of the sim landscape. Eight new tokens keep the
#: simulated generation latency small; the simulated black box answers at once.
SIM_SETS = ["generator.backend=sim", "generator.model=sim-hard", "generator.max_new_tokens=8",
            "evaluator.model=sim-model", "evaluator.concurrency=64"]


def default_data_dir() -> str | None:
    for var in ("IZRAY_DATA_DIR", "IZRAY_TEST_DATA"):
        if os.environ.get(var):
            return os.environ[var]
    shared = ROOT.parent / "shared" / "data" / "instruction_induction"
    return str(shared) if shared.is_dir() else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="the same measurement, small")
    p.add_argument("--screen", action="store_true",
                   help="which tasks vary at all: uniform soft prompts on every task, budget 10")
    p.add_argument("--config", help="izray config of the generator / black box to compare on")
    p.add_argument("--data-dir", help="task data (default: $IZRAY_DATA_DIR or ../shared)")
    p.add_argument("--tasks", help="comma-separated tasks (default: per landscape)")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--seeds", type=int, help="seeds 0..N-1 (default: per landscape)")
    p.add_argument("--budget", type=int, help="paid queries per task (default: per landscape)")
    p.add_argument("--landscape", choices=("real", "sim"), default="real")
    p.add_argument("--out", help="where quality.json/.md/.png go")
    p.add_argument("--work", help="where the run directories go")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every run (repeatable)")
    p.add_argument("--variant", action="append", default=[], metavar="'LABEL=STRATEGY K=V ...'",
                   help="an extra arm: a strategy with its own overrides (repeatable)")
    p.add_argument("--prior", type=Path, metavar="QUALITY_JSON",
                   help="add the rows of an earlier quality.json (same settings) as arms "
                        "LABEL@prior, on the task x seed cells run now")
    p.add_argument("--reference", default="instructzero",
                   help="the arm the others are compared with (default instructzero)")
    args = p.parse_args(argv)
    preset = PRESETS[args.landscape]["quick" if args.quick else "full"]
    args.task_list = [t.strip() for t in args.tasks.split(",")] if args.tasks else list(
        preset["tasks"])
    args.strategy_list = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = set(args.strategy_list) - set(STRATEGIES)
    if unknown:
        p.error(f"unknown strategies {sorted(unknown)}; choose from {', '.join(STRATEGIES)}")
    args.arms = {s: (s, []) for s in args.strategy_list}
    for spec in args.variant:
        head, *sets = spec.split()
        label, _, strategy = head.partition("=")
        if not label or strategy not in STRATEGIES or label in args.arms:
            p.error(f"--variant {spec!r}: give 'LABEL=STRATEGY KEY=VALUE ...' with a new label "
                    f"and a strategy from {', '.join(STRATEGIES)}")
        if any("=" not in x for x in sets):
            p.error(f"--variant {spec!r}: overrides are KEY=VALUE")
        args.arms[label] = (strategy, sets)
    args.strategy_list = list(args.arms)
    if args.reference not in args.arms:
        p.error(f"--reference {args.reference!r} is not an arm; arms: {', '.join(args.arms)}")
    args.seeds = args.seeds or preset["seeds"]
    args.budget = args.budget or preset["budget"]
    args.preset_sets = list(preset["sets"])
    name = f"quality-{args.landscape}{'-quick' if args.quick else ''}"
    if args.screen:
        name = f"quality-screen-{args.landscape}"
        args.strategy_list, args.seeds, args.budget = ["uniform"], 1, SCREEN["budget"]
        args.preset_sets = list(SCREEN["sets"])
    args.out = Path(args.out or ROOT / "benchmarks" / "results" / name)
    args.work = Path(args.work or ROOT / "runs" / name)
    if args.landscape == "real" and args.data_dir is None:
        args.data_dir = default_data_dir()
    return args


def screen(args: argparse.Namespace, extra: list[str]) -> int:
    """Run ``uniform`` on every task once and report how much its dev scores vary."""
    import numpy as np

    from izray.tasks import list_tasks

    if not args.tasks:
        args.task_list = [t.name for t in list_tasks(args.data_dir) if t.kind != "builtin"]
    path = run_one(args, "uniform", SCREEN["seed"], extra)
    _, history = read_run(path)
    rows = []
    for task in args.task_list:
        mine = [h for h in history if h["task"] == task]
        dev = np.array([h["dev_score"] for h in mine if h["query"] and h["dev_score"] is not None])
        rows.append({"task": task, "queries": int(dev.size),
                     "distinct": len({h["instruction"] for h in mine}),
                     "mean_dev": float(dev.mean()) if dev.size else None,
                     "sd_dev": float(dev.std()) if dev.size else None,
                     "max_dev": float(dev.max()) if dev.size else None,
                     "nonzero": int((dev > 0).sum()), "varies": bool(dev.size and dev.std() > 0)})
    rows.sort(key=lambda r: -(r["sd_dev"] or 0))
    (args.out / "screen.json").write_text(json.dumps(
        {"rows": rows, "machine": machine(), "seed": SCREEN["seed"], "budget": args.budget,
         "sets": [*args.preset_sets, *args.sets], "config": args.config}, indent=1) + "\n")
    print("| task | queries | distinct | mean dev | sd dev | max dev | nonzero |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['queries']} | {r['distinct']} | {r['mean_dev']:.3f} | "
              f"{r['sd_dev']:.3f} | {r['max_dev']:.2f} | {r['nonzero']} |")
    print(f"varying tasks: {','.join(r['task'] for r in rows if r['varies'])}")
    return 0


def run_one(args: argparse.Namespace, label: str, seed: int, extra: list[str]) -> Path:
    """One ``izray run`` of every task for arm ``label`` and ``seed`` (continued if present)."""
    strategy, arm_sets = getattr(args, "arms", {}).get(label, (label, []))
    out = args.work / "runs" / f"{label}-seed{seed}"
    if (out / "summary.json").is_file():
        summary = json.loads((out / "summary.json").read_text())
        if all(t.get("finished") for t in summary["tasks"].values()):
            print(f"  {out.name}: done before, kept", flush=True)
            return out
    sets = [*args.preset_sets, *extra, *args.sets, *arm_sets, f"strategy={strategy}",
            f"seed={seed}",
            f"bo.budget={args.budget}", f"evaluator.cache_path={args.work / 'cache.sqlite'}"]
    cmd = [sys.executable, "-m", "izray.cli", "run", *([args.config] if args.config else []),
           "--out", str(out), "--tasks", ",".join(args.task_list)]
    if args.data_dir:
        cmd += ["--data-dir", str(args.data_dir)]
    for s in sets:
        cmd += ["--set", s]
    if (out / "config.json").is_file():  # interrupted: continue it (the simulator's port moved)
        cmd = [sys.executable, "-m", "izray.cli", "resume", str(out),
               *(x for s in sets if s.startswith("evaluator.base_url=") for x in ("--set", s))]
    log = args.work / "logs" / f"{label}-seed{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    with open(log, "a") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode not in (0, 3):  # 3: a task stopped by a cap, which is a result here
        tail = log.read_text().strip().splitlines()[-3:]
        raise SystemExit(f"izray run failed for {label} seed {seed} (exit "
                         f"{proc.returncode}); see {log}:\n" + "\n".join(tail))
    print(f"  {out.name}: {time.monotonic() - t0:.0f} s", flush=True)
    return out


def collect(args: argparse.Namespace, dirs: dict[tuple[str, int], Path]):
    """The runs read as ``izray report`` reads them, rows (one per strategy x task x seed) and
    best-so-far curves per task and strategy."""
    keys = sorted(dirs)
    report = load_report([dirs[k] for k in keys])
    rows, curves = [], {t: {s: [] for s in args.strategy_list} for t in args.task_list}
    for (strategy, seed), run in zip(keys, report.runs, strict=True):
        for task, r in (run.summary or {}).get("tasks", {}).items():
            rows.append({"strategy": strategy, "task": task, "seed": seed,
                         "dev_score": r["dev_score"], "test_score": r["test_score"],
                         "queries": r["queries"], "candidates": r["candidates"],
                         "api_calls": r["prompts"], "paid_api_calls": r["api_calls"],
                         "best_instruction": r["best_instruction"],
                         "converged": r.get("converged") is not None,
                         "raced_queries": r.get("raced_queries", 0)})
    arm = {str(dirs[k]): k[0] for k in keys}
    for task, by_arm in report_curves(report, lambda run: arm[str(run.path)],
                                      args.budget).items():
        for strategy, cs in by_arm.items():
            curves.setdefault(task, {}).setdefault(strategy, []).extend(cs)
    return report, rows, curves


def landscape_properties(tasks: list[str], n_points: int = 1000, n_share: int = 20000) -> list:
    """The sim landscape over the box, measured through the simulated generator and a real
    projection (seed 0): distinct instructions in ``n_points`` random soft prompts, the best
    test score over all instructions, the share of the box within 0.05 of it."""
    import numpy as np

    from izray.generation.prompt import induction_text
    from izray.generation.sim_backend import SimulatedGenerator, detect_operation
    from izray.softprompt import SoftPromptProjection, stable_seed
    from izray.tasks import load_task, make_splits
    from izray.testing import landscape

    out = []
    for name in tasks:
        task = load_task(name)
        splits = make_splits(task, 0, n_exemplars=5, n_dev=20)
        text = induction_text(splits.exemplars, "The instruction was to")
        op = detect_operation(text)
        gen = SimulatedGenerator(landscape="hard", seed=0, sleep=lambda s: None)
        proj = SoftPromptProjection.create(10, 5, gen.hidden, 1.0, 1.0,
                                           seed=stable_seed(0, name, "projection"))
        z = np.random.default_rng(0).uniform(-1, 1, (n_share, 10))
        texts = [gen.instruction_for(proj(zi), text) for zi in z]
        inputs = [ex.input for ex in splits.test]
        scores: dict[str, float] = {}
        for t in set(texts):
            parsed = landscape.parse(t)
            scores[t] = landscape.true_score(*parsed, inputs) if parsed else 0.0
        best = landscape.measure(op, inputs, n_points=10)["best"]
        near = float(np.mean([scores[t] >= best - 0.05 for t in texts]))
        out.append({"task": name, "distinct_in_1000": len(set(texts[:n_points])),
                    "best_test_score": best, "near_best_share": near,
                    "p_random_finds_near_best_in_150": 1 - (1 - near) ** 150,
                    "mean_random_test_score": float(np.mean([scores[t] for t in texts]))})
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    extra, sim = [], None
    if args.landscape == "sim":
        sim = SimulatorProcess("--landscape", "hard", "--noise", "0")
        extra = [*SIM_SETS, f"evaluator.base_url={sim.base_url}"]
    if args.screen:
        try:
            return screen(args, extra)
        finally:
            if sim is not None:
                sim.stop()
    print(f"quality: {len(args.strategy_list)} strategies x {args.seeds} seeds x "
          f"{len(args.task_list)} tasks, budget {args.budget}, landscape {args.landscape}; "
          f"runs in {args.work}", flush=True)
    try:
        dirs = {(s, k): run_one(args, s, k, extra)
                for k in range(args.seeds) for s in args.strategy_list}
    finally:
        if sim is not None:
            sim.stop()
    report, rows, curves = collect(args, dirs)
    if args.prior:  # earlier measurements of the same cells (no curves: their runs are gone)
        prior = json.loads(args.prior.read_text())
        cells = {(r["task"], r["seed"]) for r in rows}
        old = [dict(r, strategy=f"{r['strategy']}@prior") for r in prior["rows"]
               if (r["task"], r["seed"]) in cells]
        rows += old
        for label in dict.fromkeys(r["strategy"] for r in old):
            args.strategy_list.append(label)
            args.arms[label] = (label.split("@")[0], [f"from {args.prior}"])
            for t in curves:
                curves[t][label] = []
    flat = {s: [c for t in curves for c in curves[t][s]] for s in args.strategy_list}
    summary = summarize(rows, flat, args.strategy_list, reference=args.reference)
    result = {"rows": rows, "summary": summary, "machine": machine(), "landscape": args.landscape,
              "tasks": args.task_list, "seeds": args.seeds, "budget": args.budget,
              "strategies": args.strategy_list, "sets": [*args.preset_sets, *args.sets],
              "arms": {k: {"strategy": v[0], "sets": v[1]} for k, v in args.arms.items()},
              "reference": args.reference,
              "config": args.config, "quick": args.quick,
              "wall_s": round(time.monotonic() - t0, 1)}
    if args.landscape == "sim":
        result["landscape_properties"] = landscape_properties(args.task_list)
    (args.out / "quality.json").write_text(json.dumps(result, indent=1) + "\n")
    arm = {str(p): s for (s, _), p in dirs.items()}
    png = write_plot(report, args.out / "quality.png", group=lambda run: arm[str(run.path)],
                     title=f"{args.landscape} landscape: best dev score vs paid queries "
                           f"({args.seeds} seeds, budget {args.budget})", length=args.budget)
    md = [f"# quality ({args.landscape} landscape{', quick' if args.quick else ''})", "",
          (f"{len(args.task_list)} tasks x {args.seeds} seeds, budget {args.budget} paid "
           f"queries; {result['machine']['date']}; wall {result['wall_s']:.0f} s"), "",
          markdown_table(summary, reference=args.reference), "",
          *[f"- `{k}`: strategy `{v[0]}`" + (f", `{' '.join(v[1])}`" if v[1] else "")
            for k, v in args.arms.items()], "", "Per task (mean test over seeds):", "",
          "| task | " + " | ".join(args.strategy_list) + " |",
          "|---|" + "---|" * len(args.strategy_list)]
    for t in args.task_list:
        cells = []
        for s in args.strategy_list:
            vals = [r["test_score"] for r in rows if r["task"] == t and r["strategy"] == s
                    and r["test_score"] is not None]
            cells.append(f"{sum(vals) / len(vals):.3f}" if vals else "-")
        md.append(f"| {t} | " + " | ".join(cells) + " |")
    md += ["", "Every run, as `izray report` shows them (differences against the first):", "",
           format_markdown(report)]
    (args.out / "quality.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"\nwrote {args.out / 'quality.json'}, {args.out / 'quality.md'}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
