"""Comparing strategies honestly: best-so-far curves, bootstrap intervals, paired comparisons.

Used by ``benchmarks/quality.py``; works on run directories alone (``summary.json`` and
``history.jsonl``), so it needs no models, no data and no Ray.

* A **cell** is one (task, seed) pair. Every strategy runs on the same cells: same splits,
  exemplars, dev and test sets, black box and budget.
* Intervals are percentile bootstraps over cells (resampling cells with replacement).
* Comparisons with a reference strategy are **paired**: the difference is taken within each
  cell, then averaged and bootstrapped, so task difficulty cancels out.

Example:
    >>> rows = [{"strategy": s, "task": "t", "seed": k, "test_score": v}
    ...         for s, vals in (("a", [0.5, 0.6]), ("b", [0.4, 0.6])) for k, v in enumerate(vals)]
    >>> paired(rows, "b", "a")["wins"], paired(rows, "b", "a")["ties"]
    (0, 1)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Bootstrap resamples: the 2.5/97.5% percentiles are stable to ~0.005 at this size.
BOOTSTRAP = 10000
#: Two test scores closer than this are a tie (one example in 1,000).
TIE = 1e-3


def read_run(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``summary.json`` and the ``history.jsonl`` records of one run directory."""
    path = Path(path)
    summary = json.loads((path / "summary.json").read_text())
    history = [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines()
               if line.strip()]
    return summary, history


def best_so_far(records: Iterable[Mapping[str, Any]], budget: int) -> np.ndarray:
    """Best dev score after each paid query ``1..budget`` (``budget`` values).

    Records are in tell order; a duplicate (``query`` null) never changes the best, a failed
    query (``dev_score`` null) counts as a query. After the last query the value is carried
    forward; before the first scored one it is NaN.
    """
    out = np.full(budget, np.nan)
    best = np.nan
    k = 0
    for r in records:
        if r.get("dev_score") is not None:
            best = r["dev_score"] if np.isnan(best) else max(best, r["dev_score"])
        if r.get("query") is not None and k < budget:
            out[k] = best
            k += 1
    if k and k < budget:
        out[k:] = out[k - 1]
    return out


def bootstrap_ci(values: Sequence[float], *, level: float = 0.95, n: int = BOOTSTRAP,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))


def _by_cell(rows: Iterable[Mapping[str, Any]], strategy: str, key: str) -> dict[tuple, float]:
    return {(r["task"], r["seed"]): r[key] for r in rows
            if r["strategy"] == strategy and r.get(key) is not None}


def paired(rows: Sequence[Mapping[str, Any]], strategy: str, reference: str,
           key: str = "test_score") -> dict[str, Any]:
    """``strategy`` against ``reference`` on the cells both have.

    Returns:
        ``wins``/``ties``/``losses`` of ``strategy``, ``mean_diff`` (strategy minus
        reference) and its bootstrap ``ci95_diff``, and ``n`` cells.
    """
    a, b = _by_cell(rows, strategy, key), _by_cell(rows, reference, key)
    cells = sorted(set(a) & set(b))
    diff = [a[c] - b[c] for c in cells]
    return {"n": len(cells), "wins": sum(d > TIE for d in diff),
            "ties": sum(abs(d) <= TIE for d in diff), "losses": sum(d < -TIE for d in diff),
            "mean_diff": float(np.mean(diff)) if diff else None,
            "ci95_diff": list(bootstrap_ci(diff)) if diff else None}


def mean_ranks(rows: Sequence[Mapping[str, Any]], strategies: Sequence[str],
               key: str = "test_score") -> dict[str, float]:
    """Mean rank of each strategy over the cells all of them have (1 = best, ties averaged)."""
    tables = {s: _by_cell(rows, s, key) for s in strategies}
    cells = set.intersection(*(set(t) for t in tables.values())) if tables else set()
    ranks: dict[str, list[float]] = {s: [] for s in strategies}
    for cell in cells:
        vals = {s: tables[s][cell] for s in strategies}
        for s in strategies:
            better = sum(v > vals[s] + TIE for v in vals.values())
            equal = sum(abs(v - vals[s]) <= TIE for v in vals.values())
            ranks[s].append(better + (equal + 1) / 2)
    return {s: float(np.mean(r)) if r else float("nan") for s, r in ranks.items()}


def queries_to_reach(curve: np.ndarray, target: float) -> int | None:
    """First paid query (1-based) at which ``curve`` reaches ``target``, or None."""
    hit = np.nonzero(np.nan_to_num(curve, nan=-np.inf) >= target - 1e-12)[0]
    return int(hit[0]) + 1 if hit.size else None


def summarize(rows: Sequence[Mapping[str, Any]], curves: Mapping[str, Sequence[np.ndarray]],
              strategies: Sequence[str], reference: str = "instructzero") -> dict[str, Any]:
    """Per strategy: mean test and its interval, mean rank, calls, duplicates, paired
    comparison with ``reference``, and how many queries its mean curve needs to reach the
    final mean best dev score of every other strategy."""
    ranks = mean_ranks(rows, strategies)
    mean_curves = {s: np.nanmean(np.stack(curves[s]), axis=0) for s in strategies if curves.get(s)}
    finals = {s: float(c[-1]) for s, c in mean_curves.items()}
    out: dict[str, Any] = {}
    for s in strategies:
        mine = [r for r in rows if r["strategy"] == s]
        tests = [r["test_score"] for r in mine if r.get("test_score") is not None]
        cands = sum(r["candidates"] for r in mine)
        entry = {
            "n": len(mine),
            "mean_test": float(np.mean(tests)) if tests else None,
            "ci95": list(bootstrap_ci(tests)) if tests else None,
            "mean_dev": float(np.mean([r["dev_score"] for r in mine
                                       if r.get("dev_score") is not None] or [np.nan])),
            "mean_rank": ranks.get(s),
            "mean_api_calls": float(np.mean([r["api_calls"] for r in mine])) if mine else None,
            "duplicate_share": (cands - sum(r["queries"] for r in mine)) / cands if cands else None,
            "final_mean_best_dev": finals.get(s),
            "queries_to_reach": {o: queries_to_reach(mean_curves[s], finals[o])
                                 for o in finals if s in mean_curves},
        }
        if s != reference and any(r["strategy"] == reference for r in rows):
            p = paired(rows, s, reference)
            entry.update({"wins_vs_" + reference: p["wins"], "ties": p["ties"],
                          "losses": p["losses"], "mean_diff_vs_" + reference: p["mean_diff"],
                          "ci95_diff_vs_" + reference: p["ci95_diff"]})
        out[s] = entry
    return out


def markdown_table(summary: Mapping[str, Mapping[str, Any]], reference: str = "instructzero") -> str:
    """The summary as a markdown table (one row per strategy)."""
    head = ("| strategy | mean test [95% CI] | mean dev | mean rank | W/T/L vs "
            f"{reference} | diff vs {reference} [95% CI] | API calls | duplicates |")
    lines = [head, "|" + "---|" * 8]
    for s, e in summary.items():
        ci = e.get("ci95") or [np.nan, np.nan]
        wtl = diff = "-"
        if ("wins_vs_" + reference) in e:
            wtl = f"{e['wins_vs_' + reference]}/{e['ties']}/{e['losses']}"
            d, dci = e["mean_diff_vs_" + reference], e["ci95_diff_vs_" + reference]
            diff = f"{d:+.3f} [{dci[0]:+.3f}, {dci[1]:+.3f}]" if d is not None else "-"
        lines.append(f"| {s} | {_f(e.get('mean_test'))} [{_f(ci[0])}, {_f(ci[1])}] | "
                     f"{_f(e.get('mean_dev'))} | {_f(e.get('mean_rank'), 2)} | {wtl} | {diff} | "
                     f"{_f(e.get('mean_api_calls'), 0)} | {_f(e.get('duplicate_share'))} |")
    return "\n".join(lines)


def _f(x: Any, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"
