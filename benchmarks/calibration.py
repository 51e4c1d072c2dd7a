"""Calibration of the GP surrogates on recorded run histories.

Usage::

    .venv/bin/python benchmarks/calibration.py RUN_DIR [RUN_DIR ...]
        [--surrogates ic,ic_residual,matern] [--residuals 1,3,10] [--start N] [--batch Q]
        [--every K] [--max-n N] [--out FILE]

Replays the soft-prompt observations of every task of every run (``state/TASK.json`` of runs
made with ``strategy`` ``instructzero`` or ``uniform``) in the order they were scored: at step
``t = start, start + Q*K, ...`` each surrogate is fitted on the first ``t`` observations (as
izray fits it: ``izray.bo.surrogate.fit_surrogate``) and predicts the next ``Q`` scores. Per
surrogate it reports how often the observed score lies within +/-2 predictive standard
deviations (nominal 95%; the predictive distribution includes the fitted noise), the mean
Gaussian negative log predictive density and the RMSE, both in standardized units (divided by
the standard deviation of the training scores, at least ``SCALE_FLOOR``), and the median
predictive sd.

A replay measures the model on the points the run actually chose, which is the situation the
acquisition function is in. Writes ``--out`` (default ``benchmarks/results/calibration.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

import numpy as np
import torch
from _common import machine, table, write_result

from izray.bo.surrogate import fit_surrogate, select_residual

#: Floor of the standardizing sd: one example in 20 (a flat history's sd is ~0 and would blow
#: up its errors; coverage does not depend on it).
SCALE_FLOOR = 0.05


def histories(run_dirs: list[Path]) -> list[dict]:
    """``{"run", "task", "x" (n x d, unit cube), "y" (n), "s" (n x m)}`` per task with z."""
    out = []
    for run in run_dirs:
        for path in sorted((run / "state").glob("*.json")):
            state = json.loads(path.read_text())
            searcher = state.get("searcher") if isinstance(state, dict) else None
            if not searcher or searcher.get("strategy") not in ("instructzero", "uniform"):
                continue
            cands = {c["id"]: c for c in searcher["candidates"]}
            obs = [o for o in searcher["observations"] if cands[o["candidate_id"]]["z"]]
            if not obs:
                continue
            z = np.array([cands[o["candidate_id"]]["z"] for o in obs], dtype=float)
            out.append({"run": run.name, "task": state["task"], "x": (z + 1.0) / 2.0,
                        "y": np.array([o["score"] for o in obs], dtype=float),
                        "s": np.array([o["per_example"] for o in obs], dtype=float)})
    return out


def replay(h: dict, kind: str, residual: float, start: int, batch: int, every: int,
           max_n: int) -> list:
    """Standardized errors, sds and log densities of each next batch after each fit."""
    rows = []
    n = min(len(h["y"]), max_n)
    for t in range(start, n - batch + 1, batch * every):
        x, y, s = (torch.tensor(h[k][:t]) for k in ("x", "y", "s"))
        scale = max(float(y.std()), SCALE_FLOOR)
        if kind == "ic_residual" and residual < 0:  # "auto": chosen on the latest batch
            rho = select_residual(x, y, s, holdout=batch, seed=t)
            model = fit_surrogate(x, y, s, seed=t, kind=kind, residual=rho)
        else:
            model = fit_surrogate(x, y, s, seed=t, kind=kind, residual=residual)
        with torch.no_grad():
            post = model.posterior(torch.tensor(h["x"][t:t + batch]), observation_noise=True)
            mu = post.mean.squeeze(-1).numpy()
            sd = post.variance.clamp_min(1e-12).sqrt().squeeze(-1).numpy()
        truth = h["y"][t:t + batch]
        for m_, s_, v in zip(mu, sd, truth, strict=True):
            zs = (v - m_) / s_
            rows.append({"t": t, "err": (v - m_) / scale, "sd": s_ / scale,
                         "covered": abs(zs) <= 2.0,
                         "nll": 0.5 * zs**2 + math.log(s_ / scale) + 0.5 * math.log(2 * math.pi)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories (with state/)")
    p.add_argument("--surrogates", default="ic,ic_residual,matern")
    p.add_argument("--residuals", default="3",
                   help="rho values tried for ic_residual; 'auto' chooses rho per fit by the "
                        "predictive density of the latest batch (select_residual)")
    p.add_argument("--start", type=int, default=10, help="first training size")
    p.add_argument("--batch", type=int, default=5, help="points predicted after each fit")
    p.add_argument("--every", type=int, default=2, help="fit after every K-th batch")
    p.add_argument("--max-n", type=int, default=150, help="replay the first N observations")
    p.add_argument("--out", type=Path, help="result JSON (default results/calibration.json)")
    args = p.parse_args(argv)
    missing = [str(r) for r in args.runs if not (r / "state").is_dir()]
    if missing:
        p.error(f"not run directories (no state/): {', '.join(missing)}")
    hs = histories(args.runs)
    if not hs:
        p.error("no instructzero/uniform task states with soft prompts in these runs")
    arms = []
    for kind in args.surrogates.split(","):
        if kind == "ic_residual":
            for v in args.residuals.split(","):
                if v.strip() == "auto":
                    arms.append(("ic_residual rho=auto", kind, -1.0))
                else:
                    arms.append((f"ic_residual rho={float(v):g}", kind, float(v)))
        else:
            arms.append((kind, kind, 0.0))
    t0 = time.monotonic()
    torch.set_num_threads(1)
    results = []
    for label, kind, rho in arms:
        rows = [r for h in hs for r in replay(h, kind, rho, args.start, args.batch, args.every,
                                                  args.max_n)]
        err = np.array([r["err"] for r in rows])
        results.append({"surrogate": label, "kind": kind, "residual": rho, "n": len(rows),
                        "coverage_2sd": float(np.mean([r["covered"] for r in rows])),
                        "nll": float(np.mean([r["nll"] for r in rows])),
                        "rmse": float(np.sqrt(np.mean(err**2))),
                        "median_sd": float(np.median([r["sd"] for r in rows]))})
        print(f"  {label}: {time.monotonic() - t0:.0f} s", flush=True)
    print(table(results, ["surrogate", "n", "coverage_2sd", "nll", "rmse", "median_sd"]))
    data = {"results": results, "machine": machine(), "runs": [str(r) for r in args.runs],
            "tasks": len(hs), "start": args.start, "batch": args.batch, "every": args.every,
            "max_n": args.max_n,
            "wall_s": round(time.monotonic() - t0, 1)}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=1) + "\n")
        path = args.out
    else:
        path = write_result("calibration", data)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
