"""Racing audit: on the sim landscape, how often did racing stop a candidate that would have won?

Usage::

    .venv/bin/python benchmarks/racing_audit.py RUN_DIR [RUN_DIR ...] [--out FILE.json]

Racing (:mod:`izray.racing`) stops a candidate after a first slice of the dev set when its
Hoeffding upper bound is below the incumbent's dev score; ``bo.racing_delta`` is the allowed
chance that the bound is wrong. On the ``sim-hard`` landscape every answer is known without a
call (:mod:`izray.testing.landscape`), so the full dev score of every stopped candidate can be
replayed. For each run directory (a ``benchmarks/quality.py --landscape sim`` run) this prints,
per run:

* ``raced``: distinct instructions stopped after the slice (their history line has
  ``dev_examples``; a repeat of one is not counted again);
* ``missed``: stopped ones whose full dev score was above the incumbent's when they were
  stopped (what ``delta`` bounds, per stop), and ``missed_share`` of the raced;
* ``lost_best``: tasks whose best full dev score in the run belonged only to stopped
  candidates, and the dev score given away there (``lost_dev``, mean over tasks).

The replay is checked as it goes: every fully scored instruction's replayed dev score must equal the
recorded one, or the script stops (the landscape or the splits changed).
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from izray.tasks import load_task, make_splits
from izray.tasks.metrics import score
from izray.testing.simulator import follow_hard

TOL = 1e-6


@cache
def _dev(task: str, seed: int, n_exemplars: int, n_dev: int) -> tuple:
    t = load_task(task)
    return t.metric, make_splits(t, seed, n_exemplars=n_exemplars, n_dev=n_dev).dev


def full_dev_score(instruction: str, task: str, seed: int, n_exemplars: int, n_dev: int) -> float:
    """The dev score the sim black box gives ``instruction`` on every dev example."""
    metric, dev = _dev(task, seed, n_exemplars, n_dev)
    return sum(score(metric, follow_hard(instruction, ex.input.strip()), ex.answers)
               for ex in dev) / len(dev)


def audit_run(run: Path) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    seed, tc = cfg["seed"], cfg["tasks"]
    lines = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    raced = missed = lost = distinct = 0
    lost_dev: list[float] = []
    for task in tc["names"]:
        mine = sorted((h for h in lines if h["task"] == task), key=lambda h: h["step"])
        n_dev = len(_dev(task, seed, tc["n_exemplars"], tc["n_dev"])[1])
        incumbent, best_full, best_replayed = None, 0.0, 0.0
        partial_of: dict[str, bool] = {}  # a repeat is scored as its first occurrence was
        for h in mine:
            full = full_dev_score(h["instruction"], task, seed, tc["n_exemplars"], tc["n_dev"])
            first = h["instruction"] not in partial_of
            partial = partial_of.setdefault(h["instruction"],
                                            h.get("dev_examples", n_dev) < n_dev)
            if not first:
                continue
            distinct += 1
            if not partial and abs(full - h["dev_score"]) > TOL:
                raise SystemExit(f"{run}: replayed dev score {full:.3f} != recorded "
                                 f"{h['dev_score']:.3f} for {h['instruction']!r} ({task}); the "
                                 "landscape or the splits differ from the run's")
            best_replayed = max(best_replayed, full)
            if partial:
                raced += 1
                missed += incumbent is not None and full > incumbent + TOL
            else:
                best_full = max(best_full, full)
                incumbent = full if incumbent is None else max(incumbent, full)
        if best_replayed > best_full + TOL:
            lost += 1
        lost_dev.append(best_replayed - best_full)
    n = len(tc["names"])
    return {"run": run.name, "delta": cfg["bo"].get("racing_delta"),
            "racing": cfg["bo"].get("racing"), "candidates": len(lines), "distinct": distinct, "raced": raced,
            "missed": missed, "missed_share": missed / raced if raced else 0.0,
            "tasks": n, "lost_best": lost, "lost_dev": sum(lost_dev) / n}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    rows = [audit_run(r) for r in args.runs]
    print("| run | racing / delta | candidates | distinct | raced | missed (share) | tasks whose best was "
          "stopped | dev given away / task |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['racing']} / {r['delta']} | {r['candidates']} | {r['distinct']} | {r['raced']} "
              f"| {r['missed']} ({r['missed_share']:.1%}) | {r['lost_best']}/{r['tasks']} "
              f"| {r['lost_dev']:.3f} |")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
