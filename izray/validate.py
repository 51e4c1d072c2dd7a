"""``izray validate``: everything ``izray run`` checks before it spends, and what the run
will cost, without starting an engine.

Checks, in the order ``izray run`` meets them: the config (on load), the tasks, their data
and splits, the generator and server model paths, the Ray address, the output directory,
and the endpoint (reachable, key accepted, model served: ``GET /models``, free). A failure
is the same one-line error ``izray run`` would give (exit 2).

The estimate is an upper bound per task, from the task's real prompts:

* requests: ``budget x n_dev`` dev calls, the test calls, and each reference instruction's dev
  and test calls (plus ``rescore_top_k x n_dev`` when re-scoring). Fewer are sent when a task
  converges (``bo.stop_at_max``), races (``bo.racing``), repeats an instruction or finds an
  answer in the cache; retries add to it.
* prompt tokens: the rendered prompts at :data:`~izray.costs.CHARS_PER_TOKEN_ESTIMATE`
  characters per token (an over-estimate for English) with an instruction of
  ``generator.max_new_tokens`` tokens; completion tokens: ``evaluator.max_tokens`` per answer
  (a hard ceiling; real answers are usually far shorter).
* USD from ``prices``; hours at ``evaluator.rpm`` / ``tpm`` (the limiter reserves
  prompt + ``max_tokens`` tokens per request), the slower of the two.

Example:
    >>> from izray.config import config_from_dict
    >>> plan = estimate(config_from_dict({}, ["bo.budget=10", "bo.n_init=4", "tasks.n_test=5"]))
    >>> [(t.task, t.requests) for t in plan.tasks]
    [('larger_number', 205), ('last_item', 205)]
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from izray._constants import EMBEDDED_MODEL_NAME
from izray.config import RunConfig
from izray.costs import cost_usd, prior_estimate, scaled
from izray.costs import total as total_usage
from izray.errors import EndpointError, RunStateError
from izray.evaluation import resolve_api, template_for
from izray.evaluation.ledger import Usage


@dataclass(frozen=True)
class TaskEstimate:
    """The most one task can spend.

    Attributes:
        task: Task name.
        n_dev: Dev examples (calls per query).
        n_test: Test examples.
        requests: Black-box requests at most (without retries).
        prompt_tokens: Prompt tokens (estimate, errs high).
        completion_tokens: Completion tokens at most.
        usd: USD at ``prices``, or ``None`` without a price for the model.
    """

    task: str
    n_dev: int
    n_test: int
    requests: int
    prompt_tokens: int
    completion_tokens: int
    usd: float | None

    @property
    def usage(self) -> Usage:
        return Usage(self.requests, self.prompt_tokens, self.completion_tokens)


@dataclass(frozen=True)
class Plan:
    """A run's estimate: per task, the total, how long the limits make it, and the checks.

    Attributes:
        tasks: One estimate per task.
        hours: Hours the configured rpm/tpm need for the total, or ``None`` (no limit).
        checks: What was checked, one line each.
    """

    tasks: list[TaskEstimate]
    hours: float | None
    checks: list[str]

    @property
    def total(self) -> Usage:
        return total_usage(t.usage for t in self.tasks)

    @property
    def usd(self) -> float | None:
        values = [t.usd for t in self.tasks]
        return None if any(v is None for v in values) else sum(values)


def estimate(cfg: RunConfig, tasks=None) -> Plan:
    """The upper-bound spend of ``cfg`` (``tasks``: from :func:`izray.driver.prepare_tasks`)."""
    from izray.driver import prepare_tasks

    tasks = prepare_tasks(cfg) if tasks is None else tasks
    template = template_for(cfg.evaluator)
    model = cfg.evaluator.model or EMBEDDED_MODEL_NAME
    refs = cfg.tasks.reference_instructions
    out = []
    for task, splits in tasks:
        def usage(examples) -> Usage:
            return prior_estimate((len(template.render("", ex.input)) for ex in examples),
                                  cfg.generator.max_new_tokens, cfg.evaluator.max_tokens)

        dev, test = usage(splits.dev), usage(splits.test)
        n_refs = len(refs.get(task.name, []))
        rescore = cfg.bo.rescore_top_k
        parts = [(dev, cfg.bo.budget + n_refs + rescore), (test, 1 + n_refs)]
        total = total_usage(scaled(u, k) for u, k in parts)
        out.append(TaskEstimate(task.name, len(splits.dev), len(splits.test), total.calls,
                                total.prompt_tokens, total.completion_tokens,
                                cost_usd(cfg.prices, model, total)))
    return Plan(out, _hours(cfg, total_usage(t.usage for t in out)), [])


def _hours(cfg: RunConfig, total: Usage) -> float | None:
    ev = cfg.evaluator
    minutes = []
    if ev.rpm:
        minutes.append(total.calls / (ev.rpm * (1 - ev.rate_margin)))
    if ev.tpm:
        reserved = total.prompt_tokens + total.calls * ev.max_tokens
        minutes.append(reserved / (ev.tpm * (1 - ev.rate_margin)))
    return max(minutes) / 60.0 if minutes else None


def validate(cfg: RunConfig, out: Path | None = None) -> Plan:
    """Run every check ``izray run`` makes before spending; return the estimate.

    Raises:
        IzrayError: the first check that fails, in ``izray run``'s words.
    """
    from izray.driver import prepare_tasks
    from izray.runtime.session import preflight

    checks = []
    tasks = prepare_tasks(cfg)
    checks.append(f"tasks: {len(tasks)} loaded and split ("
                  + ", ".join(f"{t.name} {len(s.dev)} dev / {len(s.test)} test"
                              for t, s in tasks) + ")")
    preflight(cfg)
    checks.append(f"models: generator {cfg.generator.model} ({cfg.generator.backend})"
                  + ("" if not cfg.evaluator.embedded else f", server {cfg.server.model}")
                  + " found")
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    checks.append(f"ray: {address} reachable" if address else "ray: a local cluster")
    if out is not None:
        checks.append(_check_out(cfg, out))
    checks.append(_check_endpoint(cfg))
    if cfg.generator.backend == "served":
        checks.append(_check_generator_server(cfg))
    plan = estimate(cfg, tasks)
    return Plan(plan.tasks, plan.hours, checks)


def _check_out(cfg: RunConfig, out: Path) -> str:
    from izray.app import holds_this_run

    if holds_this_run(cfg, out):
        return f"out: {out} holds this run; `izray run` continues it"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunStateError(f"output directory {out} is not empty; choose another --out"
                            " (or `izray resume` it)")
    parent = out if out.exists() else next(p for p in out.absolute().parents if p.exists())
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunStateError(f"cannot create the run directory {out}: {parent} is not writable;"
                            " choose another --out")
    return f"out: {out} can be created"


def _check_endpoint(cfg: RunConfig) -> str:
    from izray.evaluation.client import BlackBoxClient
    from izray.runtime.actors import read_api_key

    ev = cfg.evaluator
    if ev.embedded:
        return (f"black box: the embedded server ({cfg.server.model}), started by the run: "
                "nothing to check before")
    key = read_api_key(ev.api_key_env, ev.api_key_file)
    where = f"file {ev.api_key_file}" if ev.api_key_file else f"${ev.api_key_env}"
    client = BlackBoxClient(ev.base_url, ev.model, api=resolve_api(ev), api_key=key,
                            timeout_s=ev.timeout_s, key_env=ev.api_key_env)

    async def check() -> None:
        try:
            await client.check()
        finally:
            await client.close()

    asyncio.run(check())
    return (f"black box: {client.shown_url} reachable, model {ev.model} served, key from "
            f"{where} {'accepted' if key else '(none here: sent without one)'}")


def _check_generator_server(cfg: RunConfig) -> str:
    """``generator.backend: served``: the server lists the model (its prompt-embeds switch
    shows only at the first generation, which costs nothing there)."""
    import openai

    from izray.config import redact_url
    from izray.generation.served_backend import served_model_name, server_key

    gen = cfg.generator
    if gen.base_url is None:
        return ("generator: the embedded server, started with --enable-prompt-embeds by the "
                "run: nothing to check before")
    shown = redact_url(gen.base_url)
    client = openai.OpenAI(base_url=gen.base_url, api_key=server_key(gen.api_key_env) or "EMPTY",
                           timeout=30.0, max_retries=1)
    try:
        model = served_model_name(client, shown, gen.served_model, EndpointError)
    finally:
        client.close()
    return f"generator: {shown} reachable, model {model} served"


def format_plan(plan: Plan, cfg: RunConfig) -> str:
    """The checks, a table per task with a total row, and the assumptions."""
    lines = [f"ok  {c}" for c in plan.checks]
    if lines:
        lines.append("")
    head = (f"{'task':22} {'dev':>4} {'test':>5} {'requests':>9} {'prompt tok':>11} "
            f"{'compl. tok':>11} {'USD':>9}")
    lines += ["estimate (at most; see the assumptions below):", head, "-" * len(head)]

    def row(name, n_dev, n_test, u: Usage, usd) -> str:
        return (f"{name:22} {n_dev:>4} {n_test:>5} {u.calls:>9,} {u.prompt_tokens:>11,} "
                f"{u.completion_tokens:>11,} {'-' if usd is None else f'{usd:.4f}':>9}")

    for t in plan.tasks:
        lines.append(row(t.task, t.n_dev, t.n_test, t.usage, t.usd))
    lines.append("-" * len(head))
    lines.append(row("total", "", "", plan.total, plan.usd))
    ev = cfg.evaluator
    if plan.hours is None:
        pace = ("no evaluator.rpm/tpm set: the pace is the endpoint's latency x "
                f"{ev.num_actors * ev.concurrency} requests in flight (not estimated)")
    else:
        limits = ", ".join(f"{k} {v:,}" for k, v in (("rpm", ev.rpm), ("tpm", ev.tpm)) if v)
        pace = f"{plan.hours:.2f} h at {limits} (less {ev.rate_margin:.0%} margin)"
    lines.append(f"time: {pace}")
    if plan.usd is None and not ev.embedded:
        lines.append(f"USD: no price for {ev.model} in `prices`")
    lines.append(
        f"assumptions: every task spends its budget ({cfg.bo.budget} queries x its dev set; "
        "fewer when a task reaches dev 1.0, races, repeats an instruction or hits the cache; "
        "retries add), then its test set; prompt tokens at 3 characters per token with "
        f"{cfg.generator.max_new_tokens}-token instructions; {ev.max_tokens} completion "
        "tokens per answer (the ceiling).")
    caps = [f"caps.{scope}.{k}={v:g}" for scope, c in (("task", cfg.caps.task), ("run", cfg.caps.run))
            for k, v in vars(c).items() if v is not None]
    if caps:
        lines.append("caps stop the run earlier: " + ", ".join(caps))
    return "\n".join(lines)
