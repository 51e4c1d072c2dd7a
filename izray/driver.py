"""The driver: owns every task's BO state and keeps the pools busy.

One event loop over Ray object refs. Each task keeps up to ``bo.batch_size`` candidates in
flight (asynchronous batch BO: a new proposal treats in-flight candidates as pending
points instead of waiting for a whole batch). A candidate's trip::

    propose (Ray task: GP fit + qLogEI)  ->  generator pool (soft prompt -> instruction)
      ->  instruction seen? reuse its scores  /  response cache  /  evaluator pool (API)
      ->  tell the optimizer -> state/TASK.json (atomic) -> history.jsonl

When a task has spent its budget, its best instruction is scored on the test split.

Durability: after every observation the task's whole state (optimizer, history records,
test result) is rewritten atomically, so a kill at any instant leaves a consistent run
directory. :meth:`Driver.load` continues from it: candidates that were in flight are
generated again (greedy decoding gives the same instruction) and their prompts are answered
from the response cache, so no paid call is repeated.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import ray

from izray._constants import EMBEDDED_MODEL_NAME
from izray.admission import CapGuard
from izray.bo import ProposalSettings
from izray.config import RunConfig, config_to_dict
from izray.costs import cost_usd, prior_estimate
from izray.costs import total as sum_usage
from izray.errors import Interrupted, IzrayError, RunStateError
from izray.evaluation import ResponseCache, resolve_api, template_for
from izray.evaluation.cache import CachedAnswer
from izray.evaluation.ledger import Ledger, Usage, lost_calls, read_journals
from izray.generation import ModelInfo
from izray.lifecycle import Ports, Reference, TaskRun
from izray.metrics import RunMetrics, run_tag
from izray.report import CACHE, LEDGER, RunDir
from izray.runtime.calls import CallBroker, get_unwrapped
from izray.search import SearcherBase, make_searcher
from izray.softprompt import SoftPromptProjection, stable_seed
from izray.status import StatusLine, failed_candidates
from izray.stopping import StopRequest, grace_seconds
from izray.tasks import Splits, Task, load_task, make_splits
from izray.testing.crash import crash_point

log = logging.getLogger("izray")

#: Seconds between checks for new cluster capacity (elastic generator pool).
SCALE_EVERY_S = 15.0
#: A task may keep up to this many times ``bo.batch_size`` candidates in flight when other
#: tasks have finished and freed their share of the pipeline.
MAX_SHARE_FACTOR = 3
#: Seconds the loop waits for a result before it looks around again (status, scaling, a
#: stop signal): short, so a SIGTERM is acted on at once.
WAIT_S = 1.0


def prepare_tasks(cfg: RunConfig, names: list[str] | None = None) -> list[tuple[Task, Splits]]:
    """Load and split every task up front, so bad input fails before anything starts."""
    out = []
    for name in names or list(cfg.tasks.names):
        task = load_task(name, cfg.tasks.data_dir, metric=cfg.tasks.metrics.get(name))
        splits = make_splits(task, cfg.seed, n_exemplars=cfg.tasks.n_exemplars,
                             n_dev=cfg.tasks.n_dev, n_test=cfg.tasks.n_test)
        out.append((task, splits))
    return out


def make_task_searcher(cfg: RunConfig, task: Task, splits: Splits,
                       settings: ProposalSettings) -> SearcherBase:
    """The searcher of ``cfg.strategy`` for one task (seeded per task and run seed)."""
    seed = stable_seed(cfg.seed, task.name, "bo")
    common = {"budget": cfg.bo.candidate_cap, "batch_size": cfg.bo.batch_size, "seed": seed}
    if cfg.strategy == "instructzero":
        return make_searcher("instructzero", dim=cfg.softprompt.dim, n_init=cfg.bo.n_init,
                             settings=settings, **common)
    if cfg.strategy == "uniform":
        return make_searcher("uniform", dim=cfg.softprompt.dim, **common)
    return make_searcher("ape", pool_size=len(splits.exemplar_pool),
                         n_exemplars=cfg.tasks.n_exemplars, **common)


class Driver:
    """Runs all tasks of one configuration to completion (or continues a run).

    The event loop: it keeps every task's :class:`~izray.lifecycle.TaskRun` filled, pumps
    the generator pool, waits on Ray refs and dispatches them. Everything a task does lives
    in its ``TaskRun``; the driver gives it the pools through :class:`~izray.lifecycle.Ports`.

    Args:
        cfg: The run configuration.
        out: The run directory.
        tasks: Loaded tasks with their splits (from :func:`prepare_tasks`).
        clock: Wall clock (injected in tests).
    """

    def __init__(self, cfg: RunConfig, out: RunDir, tasks: list[tuple[Task, Splits]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.out = out
        self.clock = clock
        self.t0 = clock()
        self.cache = ResponseCache(cfg.evaluator.cache_path or out.path / CACHE)
        self.ledger = Ledger(out.path / LEDGER)
        self.template = template_for(cfg.evaluator)
        self.handlers: dict[ray.ObjectRef, Callable[[ray.ObjectRef], None]] = {}
        self.settings = ProposalSettings(num_restarts=cfg.bo.num_restarts,
                                         raw_samples=cfg.bo.raw_samples, maxiter=cfg.bo.maxiter,
                                         surrogate=cfg.bo.surrogate, residual=cfg.bo.residual,
                                         incumbent_samples=cfg.bo.incumbent_samples)
        self.runs: dict[str, TaskRun] = {}
        refs = cfg.tasks.reference_instructions
        for task, splits in tasks:
            prior = prior_estimate((len(self.template.render("", ex.input)) for ex in splits.dev),
                                   cfg.generator.max_new_tokens, cfg.evaluator.max_tokens)
            self.runs[task.name] = TaskRun(
                task, splits, make_task_searcher(cfg, task, splits, self.settings),
                budget=cfg.bo.budget, render=self.template.render, cue=cfg.generator.cue,
                out=out, elapsed=lambda: self.clock() - self.t0, clock=clock, prior=prior,
                references=[Reference(text) for text in refs.get(task.name, [])],
                racing=cfg.bo.racing, racing_delta=cfg.bo.racing_delta,
                rescore_top_k=cfg.bo.rescore_top_k, stop_at_max=cfg.bo.stop_at_max)
        unknown = sorted(set(refs) - set(self.runs))
        if unknown:
            log.warning("tasks.reference_instructions names %s, which this run does not "
                        "optimize", ", ".join(unknown))
        self.guard = CapGuard(cfg.caps, self.runs, self._usd)
        self.generators = None
        self.evaluators = None
        self.broker: CallBroker | None = None
        self.call_settings: dict[str, Any] = {}
        self.status = StatusLine()
        self._last_scale = 0.0
        self.proposal_seconds = 0.0
        self.lost_in_flight = 0  # calls sent but never journaled (see ingest_journals)
        self.proposals = 0
        self.busy_s = 0.0  # time the driver spent coordinating (not waiting)
        self.resumed = False
        self.stop = StopRequest()  # the app installs it as the signal handler
        self.metrics = RunMetrics(run_tag(out.path), clock=clock)  # Ray metrics (izray.metrics)

    # ---------------------------------------------------------------- state

    def load(self) -> int:
        """Continue from the run directory's saved state; returns tasks already finished.

        Raises:
            RunStateError: a state file is unreadable or belongs to another task.
        """
        max_t = 0.0
        for run in self.runs.values():
            state = self.out.read_state(run.name)
            if state is None:
                continue
            run.restore(state, f"{self.out.path}/state/{run.name}.json")
            path = self.out.projection_path(run.name)
            if (not run.finished or run.stopped) and path.is_file():
                SoftPromptProjection.load(path)  # damaged: fail now, before any pool starts
            max_t = max([max_t, *(float(r.get("t", 0.0)) for r in run.records)])
        self.t0 = self.clock() - max_t
        self.ingest_journals()
        for run in self.runs.values():
            if run.stopped and self._resume_blocked(run) is None:  # caps were raised: carry on
                run.reopen()
        self.out.rewrite_history(sorted((r for run in self.runs.values() for r in run.records),
                                        key=lambda r: r.get("t", 0.0)))
        self.resumed = True
        return sum(r.finished for r in self.runs.values())

    def ingest_journals(self, final: bool = False) -> int:
        """Fold the evaluator actors' journals into the ledger and the cache.

        Calls that completed while no driver was listening (a crash) are recorded and their
        answers cached, so they count once and are never paid again. With ``final`` (every
        evaluator of the run is idle) calls that were sent but never journaled, because their
        process died with the answer in flight, enter the ledger as failed one-attempt calls
        and are counted in ``lost_in_flight``: the requests the server saw, answers lost.
        """
        records = list(read_journals(self.out.journal_dir))
        if final:
            lost = lost_calls(self.out.journal_dir)
            self.lost_in_flight = len(lost)
            if lost:
                log.warning("%d call(s) were lost in flight at a crash (sent, then their "
                            "process died before the answer was journaled): counted as failed "
                            "calls; their prompts were asked again", len(lost))
            records += lost
        new = self.ledger.record(records)
        self.cache.put_many({r.key: CachedAnswer(r.text, r.prompt_tokens, r.completion_tokens)
                             for r in records if r.ok and r.text is not None})
        usage = self.ledger.usage_by_tag()
        for run in self.runs.values():
            run.usage = usage.get(run.name, Usage())
        return new

    # ---------------------------------------------------------------- set-up

    def attach(self, generators, evaluators, info: ModelInfo, call_settings: dict[str, Any]) -> None:
        """Give the driver its pools and the generator model's facts; start every task."""
        self.generators = generators
        self.evaluators = evaluators
        self.call_settings = call_settings
        self.broker = CallBroker(self.cache, self.ledger, call_settings, evaluators.submit,
                                 evaluators.finish, self._register)
        ports = Ports(generate=generators.enqueue, evaluate=self._evaluate,
                      propose=self._propose, finished=self._on_finished)
        sp = self.cfg.softprompt
        for run in self.runs.values():
            path = self.out.projection_path(run.name)
            if path.is_file():
                projection = SoftPromptProjection.load(path)
                if projection.hidden != info.hidden:
                    raise RunStateError(f"the run's projection for {run.name} is for hidden size "
                                        f"{projection.hidden}, the generator has {info.hidden}")
            else:
                projection = SoftPromptProjection.create(
                    sp.dim, sp.n_tokens, info.hidden, info.embed_std, sp.scale,
                    seed=stable_seed(self.cfg.seed, run.name, "projection"))
                projection.save(path)
            run.begin(ports, projection, self.guard)

    def _register(self, ref: ray.ObjectRef, callback: Callable[[ray.ObjectRef], None]) -> None:
        self.handlers[ref] = callback

    # ---------------------------------------------------------------- ports

    def _evaluate(self, prompts: list[str], done, tag: str) -> None:
        self.broker.request(prompts, done, tag=tag)

    def _propose(self, compute, request, done) -> None:
        ref = _compute_remote(self.cfg.bo.num_cpus).remote(compute, request)
        self.handlers[ref] = lambda r: self._on_proposed(r, done)

    def _on_proposed(self, ref: ray.ObjectRef, done) -> None:
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as err:
            done(None, str(err).splitlines()[0][:200])
            return
        self.proposals += 1
        self.proposal_seconds += float(getattr(result, "seconds", 0.0))
        done(result, None)

    def _on_generated(self, ref: ray.ObjectRef) -> None:
        self.generators.finish(ref)
        for res in _get(ref):
            name, cid = res.key.split("\x00")
            self.runs[name].on_generated(int(cid), res.instruction)

    def _on_finished(self, run: TaskRun) -> None:
        self.out.write_summary(self.summary())

    # ---------------------------------------------------------------- loop

    def run(self) -> dict[str, Any]:
        """Optimize every task, score the winners on test, write and return the summary."""
        self.ingest_journals()
        t_loop = self.clock()
        self.status.start(t_loop, self._run_usage().calls, self._throttled(),
                          failed_candidates(list(self.runs.values())),
                          sum(r.queries for r in self.runs.values()))
        while not all(r.finished for r in self.runs.values()):
            if self.stop.requested:
                self._stop()  # raises Interrupted
            self._scale()
            share = self._share()
            for run in self.runs.values():
                run.fill(share, self.guard)
            for ref in self.generators.pump():
                self.handlers[ref] = self._on_generated
            for ref in self.generators.starting_refs():
                self.handlers.setdefault(ref, self.generators.on_started)
            if all(r.finished for r in self.runs.values()):
                break  # the last task finished without waiting (cap, cached test answers)
            if not self.handlers:
                stuck = [r.name for r in self.runs.values() if not r.finished]
                raise IzrayError(f"internal error: nothing in flight for tasks {stuck}")
            t_wait = self.clock()
            ready, _ = ray.wait(list(self.handlers), num_returns=1, timeout=WAIT_S)
            self.busy_s -= self.clock() - t_wait
            if ready:
                more, _ = ray.wait(list(self.handlers), num_returns=len(self.handlers), timeout=0)
                for ref in dict.fromkeys(ready + more):
                    self.handlers.pop(ref)(ref)
            self._status()
        self.busy_s += self.clock() - t_loop
        self.ingest_journals(final=True)
        self.metrics.update(self, final=True)
        summary = self.summary()
        crash_point("summary")
        self.out.write_summary(summary)
        return summary

    def _stop(self) -> None:
        """A stop signal: issue nothing more, let the black-box calls in flight finish
        (their answers are journaled by the evaluators, so a resume gets them from the
        cache) for the grace period or until a second signal, write the summary.

        Raises:
            Interrupted: always, once the run directory is consistent.
        """
        grace = grace_seconds(self.cfg.ray.stop_grace_s)
        calls = list(self.evaluators.calls)
        t0 = self.clock()
        log.info("stopping: %d black-box request(s) in flight; waiting up to %.0f s for them",
                 len(calls), grace)
        while calls and not self.stop.immediate and self.clock() - t0 < grace:
            left = grace - (self.clock() - t0)
            _, calls = ray.wait(calls, num_returns=len(calls), timeout=min(0.5, max(left, 0)))
        self.ingest_journals()  # what finished is now in the ledger and the cache
        summary = self.summary()
        summary["interrupted"] = self.stop.name
        self.out.write_summary(summary)
        self.metrics.update(self)  # after the summary, and without waiting: SIGKILL is near
        unfinished = sum(not r.finished for r in self.runs.values())
        raise Interrupted(
            f"stopped by {self.stop.name}: {unfinished} of {len(self.runs)} task(s) unfinished"
            f"{f', {len(calls)} call(s) still in flight (counted at resume)' if calls else ''}; "
            f"state and summary written; continue with `izray resume {self.out.path}`")

    def _scale(self) -> None:
        now = self.clock()
        if now - self._last_scale >= SCALE_EVERY_S:
            self._last_scale = now
            self.generators.scale()

    def _share(self) -> int:
        """Candidates in flight allowed per task: ``bo.batch_size``, more once tasks finish.

        The pipeline holds ``n_tasks * batch_size`` candidates; a finished task's share is
        spread over the tasks still running (up to ``MAX_SHARE_FACTOR * batch_size`` each), so
        the tail of a run keeps the pools busy. No task ever gets less than ``batch_size``.
        """
        q = self.cfg.bo.batch_size
        active = sum(not r.search_done for r in self.runs.values()) or 1
        return max(q, min(MAX_SHARE_FACTOR * q, (len(self.runs) * q) // active))

    # ---------------------------------------------------------------- caps

    def _usd(self, usage: Usage) -> float | None:
        model = self.cfg.evaluator.model or EMBEDDED_MODEL_NAME
        return cost_usd(self.cfg.prices, model, usage)

    def _run_usage(self) -> Usage:
        return sum_usage(r.usage for r in self.runs.values())

    def _resume_blocked(self, run: TaskRun) -> str | None:
        """Why a stopped task still cannot continue under the (possibly raised) caps."""
        if run.queries < run.budget and run.searcher.remaining > 0:
            return self.guard.exhausted(run)
        return self.guard.test_blocked(run, inflight=False)

    # ---------------------------------------------------------------- reporting

    def _throttled(self) -> int:
        """429 answers this session's evaluators reported (all tasks)."""
        return sum(self.broker.throttled.values()) if self.broker is not None else 0

    def _status(self) -> None:
        self.metrics.update(self)  # throttled on its own
        now = self.clock()
        if not self.status.due(now):
            return
        runs = list(self.runs.values())
        elapsed = max(now - self.t0, 1e-9)
        total = self._run_usage()
        usd = self._usd(total)
        window = self.status.since_last(now, total.calls, self._throttled(),
                                        failed_candidates(runs), self.cfg.evaluator.rpm,
                                        self.metrics.limiter)
        log.info("status: %d/%d tasks done, %d/%d queries (%d candidates), %d API calls, %s, "
                 "%d+%d tokens%s, %d generator actor(s), %d generate calls in flight, "
                 "%d queued, %d prompts in flight, %d proposals (%.1f s CPU), %.0f s%s",
                 sum(r.finished for r in runs), len(runs), sum(r.queries for r in runs),
                 sum(r.budget for r in runs), sum(r.n_candidates for r in runs), total.calls,
                 window, total.prompt_tokens, total.completion_tokens,
                 "" if usd is None else f", ${usd:.4f}", self.generators.size,
                 self.generators.active_calls, len(self.generators.queue), self.broker.inflight,
                 self.proposals, self.proposal_seconds, elapsed, self.status.eta(now, runs))

    def summary(self) -> dict[str, Any]:
        """The ``summary.json`` contract (see README "Outputs")."""
        tasks = {run.name: run.summary_row(self._usd) for run in self.runs.values()}
        total = self._run_usage()
        usage = {"queries": sum(r.queries for r in self.runs.values()),
                 "candidates": sum(r.n_candidates for r in self.runs.values()),
                 "api_calls": total.calls, "prompt_tokens": total.prompt_tokens,
                 "completion_tokens": total.completion_tokens, "usd": self._usd(total),
                 "lost_in_flight": self.lost_in_flight}
        return {"strategy": self.cfg.strategy, "tasks": tasks, "usage": usage,
                "config": config_to_dict(self.cfg)}

    def close(self) -> None:
        self.cache.close()
        self.ledger.close()
        self.out.close()


def _get(ref: ray.ObjectRef) -> Any:
    """``ray.get`` that re-raises izray errors from actors as themselves (one-line messages)."""
    return get_unwrapped(ref)


def _compute_remote(num_cpus: float):
    from izray.runtime.actors import compute_task

    return compute_task.options(num_cpus=num_cpus)


def describe_endpoint(cfg: RunConfig) -> str:
    ev = cfg.evaluator
    if ev.embedded:
        return f"embedded local server ({cfg.server.model}, {resolve_api(ev)} API)"
    return f"{config_to_dict(cfg)['evaluator']['base_url']} model {ev.model} ({resolve_api(ev)} API)"


def saved_config(path) -> dict[str, Any]:
    """The config a run directory was created with."""
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise RunStateError(f"{path} is not an izray run directory (no readable config.json); "
                            "`izray run --out DIR` creates one") from err
