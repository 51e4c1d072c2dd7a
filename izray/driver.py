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
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import ray

from izray._constants import EMBEDDED_MODEL_NAME
from izray.admission import CapGuard
from izray.bo import ProposalSettings, TaskOptimizer
from izray.config import RunConfig, config_to_dict
from izray.costs import cost_usd, largest, prior_estimate
from izray.costs import total as sum_usage
from izray.errors import IzrayError, RunStateError
from izray.evaluation import ResponseCache, resolve_api, template_for
from izray.evaluation.cache import CachedAnswer
from izray.evaluation.ledger import Ledger, Usage, read_journals
from izray.generation import GenerationRequest, ModelInfo, induction_text
from izray.report import CACHE, LEDGER, RunDir
from izray.runtime.calls import CallBroker
from izray.softprompt import SoftPromptProjection, stable_seed
from izray.tasks import Example, Splits, Task, load_task, make_splits, score

log = logging.getLogger("izray")

#: Seconds between status lines while running.
STATUS_EVERY_S = 30.0
#: Seconds between checks for new cluster capacity (elastic generator pool).
SCALE_EVERY_S = 15.0
#: A task may keep up to this many times ``bo.batch_size`` candidates in flight when other
#: tasks have finished and freed their share of the pipeline.
MAX_SHARE_FACTOR = 3
#: Version of ``state/TASK.json``.
STATE_VERSION = 1


@dataclass
class TaskRun:
    """Everything the driver tracks for one task."""

    task: Task
    splits: Splits
    opt: TaskOptimizer
    prompt_text: str
    projection: SoftPromptProjection | None = None
    proposing: bool = False
    candidates: dict[int, Any] = field(default_factory=dict)
    scores: dict[str, tuple[float, list[float]]] = field(default_factory=dict)
    waiting: dict[str, list[Any]] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    t_start: float = 0.0
    wall_before: float = 0.0
    wall_s: float | None = None
    test_started: bool = False
    test_score: float | None = None
    finished: bool = False
    stopped: str | None = None
    prior: Usage = field(default_factory=Usage)  # one dev evaluation's spend, estimated
    requested: int = 0  # candidates asked of the proposal in flight
    eval_max: Usage | None = None  # largest dev evaluation seen (calls, tokens)
    test_need: Usage | None = None  # estimate of the test evaluation while it is in flight

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def queries(self) -> int:
        return len(self.records)

    @property
    def n_pending(self) -> int:
        return self.opt.n_pending

    @property
    def n_dev(self) -> int:
        return len(self.splits.dev)

    @property
    def n_test(self) -> int:
        return len(self.splits.test)

    def state(self, wall_s: float) -> dict[str, Any]:
        """What ``state/TASK.json`` holds (JSON-serialisable)."""
        return {"version": STATE_VERSION, "task": self.name, "optimizer": self.opt.get_state(),
                "records": self.records, "test_score": self.test_score,
                "finished": self.finished, "stopped": self.stopped, "wall_s": wall_s,
                "eval_max": None if self.eval_max is None else asdict(self.eval_max)}


def prepare_tasks(cfg: RunConfig, names: list[str] | None = None) -> list[tuple[Task, Splits]]:
    """Load and split every task up front, so bad input fails before anything starts."""
    out = []
    for name in names or list(cfg.tasks.names):
        task = load_task(name, cfg.tasks.data_dir, metric=cfg.tasks.metrics.get(name))
        splits = make_splits(task, cfg.seed, n_exemplars=cfg.tasks.n_exemplars,
                             n_dev=cfg.tasks.n_dev, n_test=cfg.tasks.n_test)
        out.append((task, splits))
    return out


class Driver:
    """Runs all tasks of one configuration to completion (or continues a run).

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
                                         raw_samples=cfg.bo.raw_samples, maxiter=cfg.bo.maxiter)
        self.runs: dict[str, TaskRun] = {}
        for task, splits in tasks:
            opt = TaskOptimizer(dim=cfg.softprompt.dim, budget=cfg.bo.budget,
                                n_init=cfg.bo.n_init, batch_size=cfg.bo.batch_size,
                                seed=stable_seed(cfg.seed, task.name, "bo"),
                                settings=self.settings)
            prior = prior_estimate((len(self.template.render("", ex.input)) for ex in splits.dev),
                                   cfg.generator.max_new_tokens, cfg.evaluator.max_tokens)
            self.runs[task.name] = TaskRun(task, splits, opt,
                                           induction_text(splits.exemplars, cfg.generator.cue),
                                           prior=prior)
        self.guard = CapGuard(cfg.caps, self.runs, self._usd)
        self.generators = None
        self.evaluators = None
        self.broker: CallBroker | None = None
        self.call_settings: dict[str, Any] = {}
        self._last_status = 0.0
        self._loop_start = (0.0, 0)  # (clock, queries) when this session's loop began
        self._last_scale = 0.0
        self.proposal_seconds = 0.0
        self.proposals = 0
        self.busy_s = 0.0  # time the driver spent coordinating (not waiting)
        self.resumed = False

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
            if state.get("version") != STATE_VERSION or state.get("task") != run.name:
                raise RunStateError(f"{self.out.path}/state/{run.name}.json is not a state "
                                    "file of this run")
            run.opt = TaskOptimizer.from_state(state["optimizer"])
            run.records = list(state.get("records", []))
            run.test_score = state.get("test_score")
            run.finished = bool(state.get("finished"))
            run.stopped = state.get("stopped")
            run.wall_before = float(state.get("wall_s", 0.0))
            if state.get("eval_max"):
                run.eval_max = Usage(**state["eval_max"])
            for obs in run.opt.observations:
                run.scores[obs.instruction] = (obs.score, list(obs.per_example))
            max_t = max([max_t, *(float(r.get("t", 0.0)) for r in run.records)])
        self.t0 = self.clock() - max_t
        self.ingest_journals()
        for run in self.runs.values():
            if run.stopped and self._resume_blocked(run) is None:  # caps were raised: carry on
                log.info("[%s] continuing: %s no longer applies", run.name, run.stopped)
                run.stopped = None
                run.finished = False
                run.test_score = None
                run.wall_s = None
                run.opt.budget = self.cfg.bo.budget
        self.out.rewrite_history(sorted((r for run in self.runs.values() for r in run.records),
                                        key=lambda r: r.get("t", 0.0)))
        self.resumed = True
        return sum(r.finished for r in self.runs.values())

    def _save(self, run: TaskRun) -> None:
        self.out.write_state(run.name, run.state(self._wall(run)))

    def _wall(self, run: TaskRun) -> float:
        if run.wall_s is not None:
            return run.wall_s
        return run.wall_before + (self.clock() - run.t_start if run.t_start else 0.0)

    def ingest_journals(self) -> int:
        """Fold the evaluator actors' journals into the ledger and the cache.

        Calls that completed while no driver was listening (a crash) are recorded and their
        answers cached, so they count once and are never paid again.
        """
        records = list(read_journals(self.out.journal_dir))
        new = self.ledger.record(records)
        self.cache.put_many({r.key: CachedAnswer(r.text, r.prompt_tokens, r.completion_tokens)
                             for r in records if r.ok and r.text is not None})
        usage = self.ledger.usage_by_tag()
        for run in self.runs.values():
            run.usage = usage.get(run.name, Usage())
        return new

    # ---------------------------------------------------------------- set-up

    def attach(self, generators, evaluators, info: ModelInfo, call_settings: dict[str, Any]) -> None:
        """Give the driver its pools and the generator model's facts."""
        self.generators = generators
        self.evaluators = evaluators
        self.call_settings = call_settings
        self.broker = CallBroker(self.cache, self.ledger, call_settings, evaluators.submit,
                                 evaluators.finish, self._register)
        sp = self.cfg.softprompt
        for run in self.runs.values():
            path = self.out.projection_path(run.name)
            if path.is_file():
                run.projection = SoftPromptProjection.load(path)
                if run.projection.hidden != info.hidden:
                    raise RunStateError(f"the run's projection for {run.name} is for hidden size "
                                        f"{run.projection.hidden}, the generator has {info.hidden}")
            else:
                run.projection = SoftPromptProjection.create(
                    sp.dim, sp.n_tokens, info.hidden, info.embed_std, sp.scale,
                    seed=stable_seed(self.cfg.seed, run.name, "projection"))
                run.projection.save(path)
            # Candidates that were in flight when a previous driver stopped: generate again.
            self._accept(run, run.opt.pending)

    def _register(self, ref: ray.ObjectRef, callback: Callable[[ray.ObjectRef], None]) -> None:
        self.handlers[ref] = callback

    # ---------------------------------------------------------------- loop

    def run(self) -> dict[str, Any]:
        """Optimize every task, score the winners on test, write and return the summary."""
        self.ingest_journals()
        for run in self.runs.values():
            run.t_start = self.clock()
        t_loop = self.clock()
        self._loop_start = (t_loop, sum(r.queries for r in self.runs.values()))
        while not all(r.finished for r in self.runs.values()):
            self._scale()
            share = self._share()
            for run in self.runs.values():
                self._fill(run, share)
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
            ready, _ = ray.wait(list(self.handlers), num_returns=1, timeout=5.0)
            self.busy_s -= self.clock() - t_wait
            if ready:
                more, _ = ray.wait(list(self.handlers), num_returns=len(self.handlers), timeout=0)
                for ref in dict.fromkeys(ready + more):
                    self.handlers.pop(ref)(ref)
            self._status()
        self.busy_s += self.clock() - t_loop
        self.ingest_journals()
        summary = self.summary()
        self.out.write_summary(summary)
        return summary

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
        active = sum(not r.opt.done for r in self.runs.values()) or 1
        return max(q, min(MAX_SHARE_FACTOR * q, (len(self.runs) * q) // active))

    def _fill(self, run: TaskRun, share: int) -> None:
        """Start a proposal if the task has room for more candidates in flight.

        Room is bounded by the pipeline share, the budget and the caps: a candidate is only
        issued if its expected spend fits under every cap next to what is spent and in
        flight. A task whose next candidate cannot fit even once its own work has landed is
        stopped; one that waits only for other tasks' in-flight work to land waits.
        """
        if run.finished or run.proposing:
            return
        opt = run.opt
        room = 0
        if not opt.done and run.stopped is None:
            room = self.guard.admit(run, min(share - opt.n_pending, opt.remaining))
            if room == 0 and opt.n_pending == 0 and opt.remaining > 0:
                reason = self.guard.exhausted(run)
                if reason is not None:
                    self._stop(run, reason)
        if opt.done:
            if not run.test_started:
                self._start_test(run)
            return
        if run.stopped is not None or room <= 0:
            return
        if opt.phase == "init":
            self._accept(run, opt.sobol_candidates(room))
            return
        request = opt.proposal_request(room)
        if request is None:  # waiting for the initial design's observations
            return
        run.proposing = True
        run.requested = room
        ref = _propose_remote(self.cfg.bo.num_cpus).remote(request)
        self.handlers[ref] = lambda r, run=run: self._on_proposed(run, r)

    def _on_proposed(self, run: TaskRun, ref: ray.ObjectRef) -> None:
        run.proposing = False
        admitted, run.requested = run.requested, 0
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as err:
            log.warning("[%s] proposal failed (%s); using Sobol points instead", run.name,
                        str(err).splitlines()[0][:200])
            self._accept(run, run.opt.sobol_candidates(admitted, force=True))
            return
        cands = run.opt.accept(result)
        if not cands and run.opt.n_pending == 0:  # every point was a near-duplicate
            cands = run.opt.sobol_candidates(admitted, force=True)
        self.proposals += 1
        self.proposal_seconds += result.seconds
        log.debug("[%s] proposal: %d points in %.1f s", run.name, len(cands), result.seconds)
        self._accept(run, cands)

    def _accept(self, run: TaskRun, candidates: list) -> None:
        requests = []
        for cand in candidates:
            run.candidates[cand.id] = cand
            soft = run.projection(np.asarray(cand.z, dtype=np.float32))
            requests.append(GenerationRequest(f"{run.name}\x00{cand.id}", soft, run.prompt_text))
        self.generators.enqueue(requests)

    def _on_generated(self, ref: ray.ObjectRef) -> None:
        self.generators.finish(ref)
        for res in _get(ref):
            name, cid = res.key.split("\x00")
            run = self.runs[name]
            self._evaluate_candidate(run, run.candidates[int(cid)], res.instruction)

    # ---------------------------------------------------------------- caps

    def _usd(self, usage: Usage) -> float | None:
        model = self.cfg.evaluator.model or EMBEDDED_MODEL_NAME
        return cost_usd(self.cfg.prices, model, usage)

    def _run_usage(self) -> Usage:
        return sum_usage(r.usage for r in self.runs.values())

    def _resume_blocked(self, run: TaskRun) -> str | None:
        """Why a stopped task still cannot continue under the (possibly raised) caps."""
        if run.opt.n_issued < self.cfg.bo.budget:
            return self.guard.exhausted(run)
        return self.guard.test_blocked(run, inflight=False)

    def _stop(self, run: TaskRun, reason: str) -> None:
        """Stop issuing candidates; those in flight finish (without new paid calls)."""
        run.stopped = reason
        run.opt.budget = run.opt.n_issued
        log.warning("[%s] stopping: %s", run.name, reason)
        self._save(run)

    # ---------------------------------------------------------------- evaluation

    def _prompts(self, instruction: str, examples: tuple[Example, ...]) -> list[str]:
        return [self.template.render(instruction, ex.input) for ex in examples]

    def _evaluate_candidate(self, run: TaskRun, cand, instruction: str) -> None:
        if instruction in run.scores:
            self._tell(run, cand, instruction, cached=True, calls=0)
            return
        if run.stopped is not None:
            self._tell(run, cand, instruction, cached=False, calls=0,
                       error=f"not evaluated: {run.stopped}")
            return
        if instruction in run.waiting:  # the same instruction is being scored right now
            run.waiting[instruction].append(cand)
            return
        run.waiting[instruction] = [cand]
        self.broker.request(self._prompts(instruction, run.splits.dev),
                            lambda answers, usage, error: self._on_dev_scored(
                                run, instruction, answers, usage, error), tag=run.name)

    def _on_dev_scored(self, run: TaskRun, instruction: str, answers: list, usage: Usage,
                       error: str | None) -> None:
        run.usage.add(usage)
        calls = usage.calls
        if calls:
            run.eval_max = largest(run.eval_max, usage)
        cands = run.waiting.pop(instruction)
        if error is not None:
            log.warning("[%s] candidate failed after retries: %s", run.name, error)
            for i, cand in enumerate(cands):
                self._tell(run, cand, instruction, cached=False, calls=calls if i == 0 else 0,
                           error=error)
            return
        per_example = [score(run.task.metric, a, ex.answers)
                       for a, ex in zip(answers, run.splits.dev, strict=True)]
        run.scores[instruction] = (float(np.mean(per_example)), per_example)
        for i, cand in enumerate(cands):
            self._tell(run, cand, instruction, cached=(i > 0 or calls == 0),
                       calls=calls if i == 0 else 0)

    def _tell(self, run: TaskRun, cand, instruction: str, *, cached: bool, calls: int,
              error: str | None = None) -> None:
        if error is None:
            value, per_example = run.scores[instruction]
            run.opt.tell(cand.id, instruction, value, per_example)
        else:
            value = None
            run.opt.tell(cand.id, instruction, None, None)
        run.candidates.pop(cand.id, None)
        record = {"task": run.name, "step": run.queries + 1, "candidate": cand.id,
                  "z": [round(float(v), 6) for v in cand.z], "instruction": instruction,
                  "dev_score": value, "cached": cached, "api_calls": calls,
                  "t": round(self.clock() - self.t0, 3)}
        if error is not None:
            record["error"] = error
        run.records.append(record)
        self._save(run)  # state first: history.jsonl is rebuilt from it on resume
        self.out.append_history(record)
        best = run.opt.best()
        log.info("[%s] %d/%d dev=%s best=%s%s  %r", run.name, run.queries, self.cfg.bo.budget,
                 "failed" if value is None else f"{value:.3f}",
                 "n/a" if best is None else f"{best.score:.3f}", " (cached)" if cached else "",
                 instruction[:100])

    # ---------------------------------------------------------------- test split

    def _start_test(self, run: TaskRun) -> None:
        best = run.opt.best()
        if best is None or run.stopped is not None:
            run.test_started = True
            log.warning("[%s] %s; no test evaluation", run.name,
                        run.stopped or "no candidate was scored")
            self._finish(run, None)
            return
        reason = self.guard.test_blocked(run, inflight=False)
        if reason is not None:  # it cannot fit even when everything in flight has landed
            run.test_started = True
            self._stop(run, reason)
            self._finish(run, None)
            return
        if self.guard.test_blocked(run, inflight=True) is not None:
            return  # fits once other tasks' work in flight has landed: wait for it
        run.test_started = True
        run.test_need = self.guard.test_need(run)
        log.info("[%s] budget spent; scoring the best instruction on %d test examples",
                 run.name, len(run.splits.test))

        def done(answers: list, usage: Usage, error: str | None) -> None:
            run.usage.add(usage)
            run.test_need = None
            if error is not None:
                log.warning("[%s] test evaluation failed: %s", run.name, error)
                self._finish(run, None)
                return
            scores = [score(run.task.metric, a, ex.answers)
                      for a, ex in zip(answers, run.splits.test, strict=True)]
            self._finish(run, float(np.mean(scores)))

        self.broker.request(self._prompts(best.instruction, run.splits.test), done, tag=run.name)

    def _finish(self, run: TaskRun, test_score: float | None) -> None:
        run.test_score = test_score
        run.finished = True
        run.wall_s = self._wall(run)
        self._save(run)
        best = run.opt.best()
        log.info("[%s] done: test=%s dev=%s  %r", run.name,
                 "n/a" if test_score is None else f"{test_score:.3f}",
                 "n/a" if best is None else f"{best.score:.3f}",
                 best.instruction if best else "")
        self.out.write_summary(self.summary())

    # ---------------------------------------------------------------- reporting

    def _status(self) -> None:
        now = self.clock()
        if now - self._last_status < STATUS_EVERY_S:
            return
        self._last_status = now
        runs = list(self.runs.values())
        elapsed = max(now - self.t0, 1e-9)
        total = self._run_usage()
        usd = self._usd(total)
        log.info("status: %d/%d tasks done, %d/%d queries, %d API calls, %d+%d tokens%s, "
                 "%d generator actor(s), %d generate calls in flight, %d queued, %d prompts in "
                 "flight, %d proposals (%.1f s CPU), %.0f s%s", sum(r.finished for r in runs),
                 len(runs), sum(r.queries for r in runs), len(runs) * self.cfg.bo.budget,
                 total.calls, total.prompt_tokens, total.completion_tokens,
                 "" if usd is None else f", ${usd:.4f}", self.generators.size,
                 self.generators.active_calls, len(self.generators.queue), self.broker.inflight,
                 self.proposals, self.proposal_seconds, elapsed, self._eta(now))

    def _eta(self, now: float) -> str:
        """``, ~N min left`` from this session's query rate (empty until one has landed)."""
        t_loop, q_loop = self._loop_start
        done = sum(r.queries for r in self.runs.values()) - q_loop
        if done <= 0 or now <= t_loop:
            return ""
        left = sum(max(0, r.opt.budget - r.queries) for r in self.runs.values()
                   if not r.finished)
        return f", ~{left / (done / (now - t_loop)) / 60.0:.0f} min left"

    def summary(self) -> dict[str, Any]:
        """The ``summary.json`` contract (see README "Outputs")."""
        tasks = {}
        for run in self.runs.values():
            best = run.opt.best()
            tasks[run.name] = {
                "best_instruction": best.instruction if best else None,
                "dev_score": best.score if best else None,
                "test_score": run.test_score,
                "queries": run.queries,
                "api_calls": run.usage.calls,
                "prompt_tokens": run.usage.prompt_tokens,
                "completion_tokens": run.usage.completion_tokens,
                "wall_s": round(self._wall(run), 3),
                "usd": self._usd(run.usage),
                "finished": run.finished,
                "stopped": run.stopped,
                "failed_queries": run.opt.n_failed,
                "metric": run.task.metric,
                "n_dev": len(run.splits.dev),
                "n_test": len(run.splits.test),
            }
        total = self._run_usage()
        usage = {"queries": sum(r.queries for r in self.runs.values()), "api_calls": total.calls,
                 "prompt_tokens": total.prompt_tokens,
                 "completion_tokens": total.completion_tokens, "usd": self._usd(total)}
        return {"tasks": tasks, "usage": usage, "config": config_to_dict(self.cfg)}

    def close(self) -> None:
        self.cache.close()
        self.ledger.close()
        self.out.close()


def _get(ref: ray.ObjectRef) -> Any:
    """``ray.get`` that re-raises izray errors from actors as themselves (one-line messages)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = err.cause if hasattr(err, "cause") else None
        if isinstance(cause, IzrayError):
            raise cause from None
        raise


def _propose_remote(num_cpus: float):
    from izray.runtime.actors import propose_task

    return propose_task.options(num_cpus=num_cpus)


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
