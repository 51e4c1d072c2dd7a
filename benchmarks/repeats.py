"""Repeats: how far apart two runs of the same settings land, and settings compared against it.

Usage::

    .venv/bin/python benchmarks/repeats.py QUALITY_JSON \\
        --setting "off=iz-off,iz-off-2" --setting "d05=instructzero,instructzero@prior" \\
        [--reference off] [--out FILE.json]

The driver is asynchronous: which proposals are in flight when a result lands depends on
timing, so two runs of identical settings are not bit-identical, and a paired comparison of
two single runs mixes the settings' difference with that run-to-run spread. Given the arms of
a ``benchmarks/quality.py`` result grouped into settings (each arm one repeat), this prints

* per setting: the mean test score over its repeats, the API calls per task, and the paired
  difference between every two of its repeats (the spread a single-run comparison carries);
* per setting against ``--reference``: the paired difference of the repeat-averaged test
  scores per task x seed cell, with a percentile-bootstrap 95% interval over cells.

and writes the same as JSON (``--out``, default beside the input as ``repeats.json``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from izray.analysis import TIE, bootstrap_ci, paired


def _cells(rows: list[dict], arm: str, key: str) -> dict[tuple, float]:
    return {(r["task"], r["seed"]): float(r[key]) for r in rows
            if r["strategy"] == arm and r.get(key) is not None}


def averaged(rows: list[dict], arms: list[str], key: str = "test_score") -> dict[tuple, float]:
    """Per cell, the mean of ``key`` over ``arms`` (only cells every arm has)."""
    per = [_cells(rows, a, key) for a in arms]
    common = set.intersection(*(set(p) for p in per))
    return {c: float(np.mean([p[c] for p in per])) for c in sorted(common)}


def compare(a: dict[tuple, float], b: dict[tuple, float]) -> dict:
    """Paired ``a - b`` over the cells both have."""
    cells = sorted(set(a) & set(b))
    diff = np.array([a[c] - b[c] for c in cells])
    return {"n": len(cells), "mean_diff": float(diff.mean()),
            "ci95_diff": list(bootstrap_ci(diff)),
            "wins": int((diff > TIE).sum()), "ties": int((abs(diff) <= TIE).sum()),
            "losses": int((diff < -TIE).sum())}


def analyse(rows: list[dict], settings: dict[str, list[str]], reference: str) -> dict:
    out: dict = {"settings": {}, "against": reference}
    for name, arms in settings.items():
        avg = averaged(rows, arms)
        calls = averaged(rows, arms, "api_calls")
        out["settings"][name] = {
            "arms": arms, "n": len(avg), "mean_test": float(np.mean(list(avg.values()))),
            "ci95_test": list(bootstrap_ci(list(avg.values()))),
            "api_calls": float(np.mean(list(calls.values()))),
            "per_repeat_mean_test": [float(np.mean(list(_cells(rows, a, "test_score").values())))
                                     for a in arms],
            "repeat_pairs": {f"{x} - {y}": paired(rows, x, y)
                             for x, y in itertools.combinations(arms, 2)}}
    ref = averaged(rows, settings[reference])
    for name, arms in settings.items():
        if name != reference:
            out["settings"][name]["vs_reference"] = compare(averaged(rows, arms), ref)
    return out


def _fmt(d: dict) -> str:
    lo, hi = d["ci95_diff"]
    return f"{d['mean_diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] {d['wins']}/{d['ties']}/{d['losses']}"


def table(result: dict) -> str:
    ref = result["against"]
    lines = [(f"| setting | repeats | mean test [95% CI] | API calls/task | repeat minus repeat "
             f"(each pair) | minus {ref} (repeat means) |"), "|---|---|---|---|---|---|"]
    for name, s in result["settings"].items():
        lo, hi = s["ci95_test"]
        pairs = "; ".join(_fmt(p) for p in s["repeat_pairs"].values()) or "-"
        vs = _fmt(s["vs_reference"]) if "vs_reference" in s else "-"
        lines.append(f"| {name} | {len(s['arms'])} | {s['mean_test']:.3f} [{lo:.3f}, {hi:.3f}] "
                     f"| {s['api_calls']:.0f} | {pairs} | {vs} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("quality_json")
    p.add_argument("--setting", action="append", required=True, metavar="NAME=ARM,ARM,...")
    p.add_argument("--reference", help="the setting the others are compared with (default: first)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    data = json.loads(Path(args.quality_json).read_text())
    arms = {r["strategy"] for r in data["rows"]}
    settings: dict[str, list[str]] = {}
    for spec in args.setting:
        name, _, members = spec.partition("=")
        listed = [m for m in members.split(",") if m]
        missing = [m for m in listed if m not in arms]
        if not name or not listed or missing:
            p.error(f"--setting {spec!r}: give NAME=ARM,ARM with arms of the file "
                    f"(unknown: {missing}; the file has {sorted(arms)})")
        settings[name] = listed
    reference = args.reference or next(iter(settings))
    if reference not in settings:
        p.error(f"--reference {reference!r} is not a --setting name")
    result = analyse(data["rows"], settings, reference)
    result.update(source=str(args.quality_json), machine=data.get("machine"))
    out = Path(args.out) if args.out else Path(args.quality_json).with_name("repeats.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
