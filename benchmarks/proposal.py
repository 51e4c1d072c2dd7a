"""Time one BO proposal (surrogate fit + joint qLogEI) on one core.

Usage::

    .venv/bin/python benchmarks/proposal.py [--quick]

Prints a table and writes ``benchmarks/results/proposal.json``::

    {"machine": {...}, "rows": [{"n": .., "q": .., "seconds": .., ...}, ...], ...}

``seconds`` is the steady-state cost the optimizer pays: the median over repeats of a
proposal warm-started from the hyperparameters fitted at the previous step (``n - 8``
observations), with ``p = q`` candidates pending. ``cold_seconds`` is the same proposal
without a warm start. Data are synthetic: ``d = 10``, ``m = 20`` binary per-example scores
that depend on ``z`` through random half-spaces, so nearby ``z`` share score vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from izray.bo.proposal import ProposalSettings, propose_detailed
from izray.bo.surrogate import fit_surrogate

D, M = 10, 20
PREVIOUS_STEP = 8
TARGET = {"n": 150, "q": 8, "seconds": 2.0}


def make_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n x D`` points in the unit cube, ``n`` scores and ``n x M`` binary score vectors."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, D, generator=g, dtype=torch.double)
    normals = torch.randn(M, D, generator=g, dtype=torch.double)
    offsets = torch.rand(M, generator=g, dtype=torch.double) * 0.5
    s = ((x - 0.5) @ normals.T > offsets - 0.4).double()
    return x, s.mean(-1), s


def machine() -> dict[str, object]:
    """Facts that matter for the timings."""
    import botorch
    import gpytorch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "botorch": botorch.__version__,
        "gpytorch": gpytorch.__version__,
    }


def time_proposal(n: int, q: int, repeats: int, settings: ProposalSettings) -> dict[str, float]:
    x, y, s = make_data(n)
    pending = torch.rand(q, D, generator=torch.Generator().manual_seed(n + q), dtype=torch.double)
    prev = max(1, n - PREVIOUS_STEP)
    warm = propose_detailed(x[:prev], y[:prev], s[:prev], None, 1, seed=0, settings=settings)
    times, fits, acqs = [], [], []
    for r in range(repeats):
        t0 = time.perf_counter()
        out = propose_detailed(
            x, y, s, pending, q, seed=1 + r, settings=settings, hyperparameters=warm.hyperparameters
        )
        times.append(time.perf_counter() - t0)
        fits.append(out.fit_seconds)
        acqs.append(out.acq_seconds)
    t0 = time.perf_counter()
    propose_detailed(x, y, s, pending, q, seed=0, settings=settings)
    cold = time.perf_counter() - t0
    return {
        "n": n,
        "q": q,
        "seconds": round(statistics.median(times), 3),
        "fit_seconds": round(statistics.median(fits), 3),
        "acq_seconds": round(statistics.median(acqs), 3),
        "cold_seconds": round(cold, 3),
    }


def time_kernel_cache(settings: ProposalSettings) -> dict[str, float]:
    """qLogEI optimisation (n=150, q=8) with and without the kernel's factor cache."""
    from botorch.acquisition.logei import qLogExpectedImprovement
    from botorch.optim import optimize_acqf
    from botorch.sampling.normal import SobolQMCNormalSampler

    x, y, s = make_data(150)
    model = fit_surrogate(x, y, s, seed=0, maxiter=settings.fit_maxiter)
    base = model.covar_module.base_kernel
    out: dict[str, float] = {}
    for cached in (True, False):
        base.cache_enabled = cached
        base.clear_cache()
        base.num_factorizations = 0
        acqf = qLogExpectedImprovement(
            model,
            best_f=float(y.max()),
            sampler=SobolQMCNormalSampler(torch.Size([settings.mc_samples]), seed=0),
        )
        bounds = torch.stack([torch.zeros(D), torch.ones(D)]).to(torch.double)
        t0 = time.perf_counter()
        optimize_acqf(
            acqf,
            bounds=bounds,
            q=8,
            num_restarts=settings.num_restarts,
            raw_samples=settings.raw_samples,
            options={"maxiter": settings.maxiter, "seed": 0},
            retry_on_optimization_warning=False,
        )
        key = "cached" if cached else "uncached"
        out[f"{key}_seconds"] = round(time.perf_counter() - t0, 3)
        out[f"{key}_factorizations"] = base.num_factorizations
    base.cache_enabled = True
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid, one repeat")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/proposal.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    settings = ProposalSettings()
    ns, qs, repeats = ((25, 150), (1, 8), 1) if args.quick else ((25, 75, 150), (1, 8, 25), 3)
    info = machine()
    propose_detailed(*make_data(10), None, 1, seed=0, settings=settings)  # warm-up
    rows = []
    print(f"{'n':>5} {'q':>4} {'seconds':>8} {'fit':>7} {'acq':>7} {'cold':>7}")
    for n in ns:
        for q in qs:
            row = time_proposal(n, q, repeats, settings)
            rows.append(row)
            print(
                f"{n:>5} {q:>4} {row['seconds']:>8.3f} {row['fit_seconds']:>7.3f} "
                f"{row['acq_seconds']:>7.3f} {row['cold_seconds']:>7.3f}",
                flush=True,
            )
    result: dict[str, object] = {
        "machine": info,
        "settings": settings.to_dict(),
        "repeats": repeats,
        "pending": "p = q",
        "rows": rows,
    }
    if not args.quick:
        cache = time_kernel_cache(settings)
        result["kernel_cache"] = cache
        print(f"kernel cache, optimize_acqf n=150 q=8: {cache}")
    target = next((r for r in rows if r["n"] == TARGET["n"] and r["q"] == TARGET["q"]), None)
    if target is not None:
        ok = target["seconds"] <= TARGET["seconds"]
        result["target"] = {**TARGET, "met": ok}
        print(f"target n=150 q=8 <= {TARGET['seconds']} s: {'met' if ok else 'MISSED'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
