"""Evaluator throughput under a rate limit, against the black-box simulator.

    .venv/bin/python benchmarks/ratelimit.py [--quick] [--only SCENARIO]

izray's evaluator pool (2 async evaluator actors, one shared rate-limiter actor) is kept
saturated with distinct prompts, sent the way the driver sends them (20 per candidate).
The simulator, in its own process, enforces the same limit over a sliding 60 s window and
answers 429 + Retry-After above it, with 100-400 ms latency. Scenarios:

* ``rpm``: requests/min limit only.
* ``tpm``: tokens/min limit only (prompts of mixed lengths; token counts are settled from
  the reported usage).
* ``rpm_server_lower``: the server allows 20% less than configured (a misconfigured or
  shared account): izray must adapt on 429s and lose nothing.

izray paces at ``1 - evaluator.rate_margin`` (98%) of the limits, a guard against network
jitter. Targets (``rpm``, ``tpm``): sustained >= 95% of the configured limit, <= 1% of requests
answered 429, zero lost evaluations. Writes ``benchmarks/results/ratelimit.json`` with
``utilization``, ``rejected_fraction`` and ``lost`` (of the ``rpm`` scenario) and all rows.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import SimulatorProcess, machine, table, write_result

from izray.config import EvaluatorConfig
from izray.runtime.actors import RateLimiterActor
from izray.runtime.pools import EvaluatorPool

WORDS = ["fox", "bird", "cat", "dog", "horse", "sheep", "goat", "lion", "tiger", "bear", "wolf", "mouse", "duck", "frog", "owl", "eagle", "falcon", "heron", "swan", "crane"]


def prompts(n_candidates: int, long: bool) -> list[list[str]]:
    """Distinct 20-prompt candidates (like a dev set), optionally of mixed lengths."""
    out = []
    for c in range(n_candidates):
        pad = " ".join(WORDS[: (c * 7) % len(WORDS)]) * (3 if long else 0)
        out.append([f"Instruction: Write the plural form of the noun. {pad} (candidate {c})"
                    f"\n\nInput: {WORDS[i]}\nOutput:" for i in range(20)])
    return out


def run_scenario(name: str, *, rpm: float | None, tpm: float | None, server_rpm: float | None,
                 server_tpm: float | None, duration_s: float) -> dict:
    args = ["--latency-ms", "100-400", "--noise", "0"]
    if server_rpm:
        args += ["--rpm", str(server_rpm)]
    if server_tpm:
        args += ["--tpm", str(server_tpm)]
    sim = SimulatorProcess(*args)
    try:
        cfg = EvaluatorConfig(base_url=sim.base_url, model="sim-model", api="completions",
                              rpm=rpm, tpm=tpm, num_actors=2, concurrency=64, max_tokens=8,
                              max_attempts=8)
        limiter = RateLimiterActor.options(num_cpus=0).remote(rpm, tpm, cfg.rate_margin)
        client_kwargs = {"base_url": sim.base_url, "model": "sim-model", "api": "completions",
                         "temperature": 0.0, "max_tokens": 8, "stop": ("\n",), "timeout_s": 30.0,
                         "max_attempts": 8}
        pool = EvaluatorPool(cfg, client_kwargs, limiter)
        pool.check()
        # Enough candidates in flight to keep the limiter, not the latency, the bottleneck.
        per_s = (rpm or 10**9) / 60.0
        if tpm:
            per_s = min(per_s, tpm / 60.0 / 40.0)
        window = max(4, int(per_s * 0.6 / 20) + 4)
        batches = iter(prompts(100000, long=tpm is not None))
        inflight: dict = {}
        submitted = ok = failed = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < duration_s:
            while len(inflight) < window:
                batch = next(batches)
                inflight[pool.submit(batch)] = len(batch)
                submitted += len(batch)
            done, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in done:
                inflight.pop(ref)
                pool.finish(ref)
                for oc in ray.get(ref):
                    ok += oc.ok
                    failed += not oc.ok
        t_send_end = time.monotonic()
        for ref in list(inflight):  # let the tail finish: nothing may be lost
            for oc in ray.get(ref):
                ok += oc.ok
                failed += not oc.ok
            pool.finish(ref)
        stats = sim.stats()
        elapsed = t_send_end - t0
        admitted = stats["ok"] + stats["injected_500"]
        rejected = stats["rate_limited"]
        row = {"scenario": name, "rpm": rpm, "tpm": tpm, "server_rpm": server_rpm,
               "server_tpm": server_tpm, "seconds": round(elapsed, 1),
               "requests": stats["requests"], "ok": ok, "failed": failed,
               "rejected_429": rejected,
               "rejected_fraction": rejected / max(1, stats["requests"]),
               "lost": submitted - ok,
               "window_max_requests": stats["window_max_requests"],
               "window_max_tokens": stats["window_max_tokens"]}
        # Sustained rate over the sending period, against the configured limit.
        if rpm:
            row["achieved_rpm"] = 60.0 * admitted / (stats["last_t"] - stats["first_t"])
            row["utilization"] = row["achieved_rpm"] / rpm
        if tpm:
            tokens = stats["limit_tokens"]  # as the server counts them: prompt + max_tokens
            row["achieved_tpm"] = 60.0 * tokens / (stats["last_t"] - stats["first_t"])
            row["utilization"] = row["achieved_tpm"] / tpm
        pool.shutdown()
        ray.kill(limiter)
        return row
    finally:
        sim.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="shorter runs (under 3 minutes)")
    p.add_argument("--only", choices=("rpm", "tpm", "rpm_server_lower"),
                   help="run one scenario (its JSON goes to ratelimit-ONLY.json)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    duration = 40.0 if args.quick else 150.0
    ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.WARNING)
    scenarios = {
        "rpm": {"rpm": 1200, "tpm": None, "server_rpm": 1200, "server_tpm": None},
        "tpm": {"rpm": None, "tpm": 60000, "server_rpm": None, "server_tpm": 60000},
        # The server allows 20% less than configured (a shared key, a wrong tier).
        "rpm_server_lower": {"rpm": 1200, "tpm": None, "server_rpm": 960, "server_tpm": None},
    }
    names = [args.only] if args.only else ["rpm", "tpm"] + ([] if args.quick else
                                                           ["rpm_server_lower"])
    rows = [run_scenario(n, **scenarios[n], duration_s=duration) for n in names]
    ray.shutdown()
    print(table(rows, ["scenario", "rpm", "tpm", "server_rpm", "seconds", "requests",
                       "utilization", "rejected_fraction", "lost", "window_max_requests"]))
    main_row = rows[0]
    result = {"machine": machine(), "quick": args.quick, "rows": rows,
              "utilization": main_row["utilization"],
              "rejected_fraction": main_row["rejected_fraction"], "lost": main_row["lost"],
              "targets": {"utilization": ">= 0.95", "rejected_fraction": "<= 0.01", "lost": 0}}
    met = all(r["utilization"] >= 0.95 and r["rejected_fraction"] <= 0.01 and r["lost"] == 0
              for r in rows if r["scenario"] in ("rpm", "tpm"))
    result["targets_met"] = met
    print(f"targets (rpm, tpm): utilization >= 0.95, 429s <= 1%, lost 0: "
          f"{'met' if met else 'NOT met'}")
    print(f"wrote {write_result('ratelimit' + (f'-{args.only}' if args.only else ''), result)}")


if __name__ == "__main__":
    main()
