"""One task's lifecycle, without Ray: admission, generation, evaluate-or-reuse, tell, test.

A :class:`TaskRun` owns a task's searcher and everything that happens to its candidates::

    fill(): may more candidates start under the budget and the caps?  -> searcher.suggest()
      -> ports.propose (remote model work, if any) -> ports.generate (soft prompt -> text)
    on_generated(): instruction already scored in this task? reuse its scores (no query)
      -> otherwise ports.evaluate(dev prompts) -> per-example scores -> tell -> state, history
    budget spent (or candidate cap reached): best instruction -> ports.evaluate(test prompts)

**Budget.** ``budget`` counts paid queries: distinct instructions scored on the dev set (a
failed evaluation counts too: it was paid). A candidate that decodes to an instruction the task
has scored is still an observation for the searcher, costs no query, and is counted in
``candidates``. ``max_candidates`` keeps a searcher that keeps finding known instructions
finite. Room for new candidates is ``budget - queries - pending``, so even if every pending
candidate turns out new, the budget holds.

**Racing** (``bo.racing > 0``): a new instruction is scored on a first slice of the dev set
and stopped there when it cannot beat the incumbent (:mod:`izray.racing`); it still counts as
a query, its missing per-example scores are imputed, and history records ``dev_examples``.

**Re-scoring** (``bo.rescore_top_k > 0``, :mod:`izray.selection`): before the test, the
top-k distinct instructions are scored on more examples and the best over dev + those is
tested. Its calls are paid, counted and capped like any other (they are reserved together
with the test's); ``selection`` in the state and summary shows the scores.

**Reference instructions** (``tasks.reference_instructions``) are scored on dev and test when
the task starts and reported beside the best found; they are paid calls but never queries.

The driver supplies the outside world as three callables (:class:`Ports`) and calls
:meth:`fill` and :meth:`on_generated`; tests supply synchronous fakes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from izray import _constants as C
from izray import racing as race
from izray import selection as select
from izray.costs import largest, scaled
from izray.costs import total as sum_usage
from izray.errors import RunStateError
from izray.evaluation.ledger import Usage
from izray.generation import GenerationRequest, induction_text
from izray.report import RunDir
from izray.search import Candidate, SearcherBase, load_searcher
from izray.softprompt import SoftPromptProjection
from izray.tasks import Example, Splits, Task, score

log = logging.getLogger("izray")

#: Version of ``state/TASK.json``.
STATE_VERSION = 2

#: ``done(answers, usage, error)``, as :class:`izray.runtime.calls.CallBroker` calls it.
DoneFn = Callable[[list, Usage, "str | None"], None]


@dataclass(frozen=True)
class Ports:
    """How a task reaches the outside world (the driver's pools, or test fakes).

    Attributes:
        generate: Queue generation requests; results come back through
            :meth:`TaskRun.on_generated` (keys are ``f"{task}\\x00{candidate id}"``).
        evaluate: ``evaluate(prompts, done, tag)``: answer black-box prompts, then call
            ``done(answers, usage, error)`` once (possibly at once, from the cache).
        propose: ``propose(compute, request, done)``: run ``compute(request)`` somewhere and
            call ``done(result, None)``, or ``done(None, error)`` if it failed.
        finished: Called once a task has finished (the driver rewrites the summary).
    """

    generate: Callable[[list[GenerationRequest]], None]
    evaluate: Callable[[list[str], DoneFn, str], None]
    propose: Callable[[Callable, Any, Callable[[Any, str | None], None]], None]
    finished: Callable[[TaskRun], None] = lambda run: None


@dataclass
class Reference:
    """A user's instruction scored beside the search (``tasks.reference_instructions``)."""

    instruction: str
    dev_score: float | None = None
    test_score: float | None = None
    error: str | None = None

    @property
    def settled(self) -> bool:
        return self.dev_score is not None or self.error is not None


@dataclass
class TaskRun:
    """Everything about one task of a run; see the module docstring.

    Attributes:
        task: The task.
        splits: Its exemplars, dev and test splits.
        searcher: The strategy's searcher.
        budget: Paid queries allowed (``bo.budget``).
        render: ``render(instruction, input) -> prompt`` (the black-box template).
        cue: Induction cue after the exemplars.
        out: The run directory (state and history are written there).
        elapsed: Seconds since the run started (the ``t`` of history records).
        clock: Monotonic clock for wall times.
        prior: Estimate of one dev evaluation's spend before any was seen.
        references: Reference instructions of this task.
        racing: First dev slice as a share of the dev set (``bo.racing``; 0: off).
        racing_delta: Confidence of the racing bound (``bo.racing_delta``).
        rescore_top_k: Candidates re-scored on extra examples before the test (0: off).
        stop_at_max: End the search once the best dev score is the maximum (``bo.stop_at_max``).
    """

    task: Task
    splits: Splits
    searcher: SearcherBase
    budget: int
    render: Callable[[str, str], str]
    cue: str
    out: RunDir
    elapsed: Callable[[], float]
    clock: Callable[[], float]
    prior: Usage = field(default_factory=Usage)
    references: list[Reference] = field(default_factory=list)
    racing: float = 0.0
    racing_delta: float = C.BO_RACING_DELTA
    rescore_top_k: int = 0
    stop_at_max: bool = C.BO_STOP_AT_MAX
    ports: Ports | None = None
    projection: SoftPromptProjection | None = None
    # --- progress
    records: list[dict] = field(default_factory=list)
    scores: dict[str, tuple[float, list[float]]] = field(default_factory=dict)
    raced: dict[str, int] = field(default_factory=dict)  # stopped early: dev examples scored
    selection: dict[str, Any] | None = None  # re-scoring of the top candidates
    waiting: dict[str, list[Candidate]] = field(default_factory=dict)
    candidates: dict[int, Candidate] = field(default_factory=dict)  # issued, not yet told
    queries: int = 0
    prompts: int = 0  # black-box prompts this task asked for (dev, test, references)
    usage: Usage = field(default_factory=Usage)
    eval_max: Usage | None = None  # largest dev evaluation seen (calls, tokens)
    reservations: dict[str, Usage] = field(default_factory=dict)  # test/reference in flight
    requested: int = 0  # candidates asked of the remote proposal in flight
    proposing: bool = False
    test_started: bool = False
    test_done: bool = False
    test_score: float | None = None
    finished: bool = False
    stopped: str | None = None  # a cap stopped the task: no test evaluation
    exhausted: str | None = None  # the candidate cap ended the search early
    said_converged: bool = False
    t_start: float = 0.0
    wall_before: float = 0.0
    wall_s: float | None = None

    # ---------------------------------------------------------------- views (CapGuard's too)

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def n_pending(self) -> int:
        return self.searcher.n_pending

    @property
    def n_dev(self) -> int:
        return len(self.splits.dev)

    @property
    def n_test(self) -> int:
        return len(self.splits.test)

    @property
    def reserved(self) -> Usage | None:
        """Expected spend of the test and reference evaluations in flight."""
        return sum_usage(self.reservations.values()) if self.reservations else None

    @property
    def n_candidates(self) -> int:
        return len(self.records)

    @property
    def converged(self) -> str | None:
        """Why the search ended at a perfect dev score (``stop_at_max``), else None."""
        best = self.searcher.best() if self.stop_at_max else None
        if best is None or best.score < C.SCORE_MAX:
            return None
        return (f"dev score {best.score:.3f} is the maximum (bo.stop_at_max) after "
                f"{self.queries} of {self.budget} queries")

    @property
    def room(self) -> int:
        """New candidates allowed by the budget, the candidate cap and ``stop_at_max``."""
        if self.converged is not None:
            return 0
        return max(0, min(self.budget - self.queries - self.n_pending, self.searcher.remaining))

    @property
    def search_done(self) -> bool:
        """Nothing pending, and no more candidates may start (budget, cap, candidate cap)."""
        if self.n_pending:
            return False
        return self.stopped is not None or self.room == 0

    # ---------------------------------------------------------------- state

    def state(self) -> dict[str, Any]:
        """What ``state/TASK.json`` holds (JSON-serialisable)."""
        return {"version": STATE_VERSION, "task": self.name, "strategy": self.searcher.strategy,
                "searcher": self.searcher.get_state(), "records": self.records,
                "queries": self.queries, "prompts": self.prompts,
                "test_score": self.test_score, "test_done": self.test_done,
                "finished": self.finished, "stopped": self.stopped, "exhausted": self.exhausted,
                "wall_s": self.wall(),
                "eval_max": None if self.eval_max is None else asdict(self.eval_max),
                "raced": self.raced, "selection": self.selection,
                "references": [asdict(r) for r in self.references],
                "splits": self.splits.fingerprint()}

    def restore(self, state: dict[str, Any], path: str) -> None:
        """Continue from a saved state (``path`` names the file in errors).

        Raises:
            RunStateError: the file is not a state of this task, strategy and izray version,
                or its fields do not have the shapes this version writes.
        """
        if not isinstance(state, dict):
            raise RunStateError(f"{path} is not a state file (a JSON {type(state).__name__}, "
                                "not an object); restore it from a backup or start a new run")
        try:
            self._restore(state, path)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise RunStateError(f"{path} has fields of the wrong shape ({type(err).__name__}: "
                                f"{str(err)[:120]}); it was edited or written by another izray "
                                "version: restore it or start a new run") from None

    def _restore(self, state: dict[str, Any], path: str) -> None:
        if state.get("version") != STATE_VERSION or state.get("task") != self.name:
            raise RunStateError(f"{path} is not a state file of this run (or was written by "
                                "another izray version)")
        saved = state.get("splits")
        if saved is not None and saved != self.splits.fingerprint():
            raise RunStateError(f"the data of task {self.name} changed since the run started: its "
                                "exemplar/dev/test examples differ from the ones its observations "
                                f"were scored on ({path}); restore the task files or start a new "
                                "run")
        if state.get("strategy") != self.searcher.strategy:
            raise RunStateError(f"{path} was written by strategy {state.get('strategy')!r}, "
                                f"this run uses {self.searcher.strategy!r}")
        self.searcher = load_searcher(state["searcher"])
        self.records = list(state.get("records", []))
        self.queries = int(state.get("queries", 0))
        self.prompts = int(state.get("prompts", 0))
        self.test_score = state.get("test_score")
        self.test_done = bool(state.get("test_done"))
        self.finished = bool(state.get("finished"))
        self.stopped = state.get("stopped")
        self.exhausted = state.get("exhausted")
        self.wall_before = float(state.get("wall_s", 0.0))
        self.raced = {str(k): int(v) for k, v in state.get("raced", {}).items()}
        selection = state.get("selection")
        # Re-scoring that was in flight is redone (the response cache answers what was paid).
        self.selection = selection if selection and selection.get("done") else None
        if state.get("eval_max"):
            self.eval_max = Usage(**state["eval_max"])
        saved = {r["instruction"]: r for r in state.get("references", [])}
        for ref in self.references:
            if ref.instruction in saved:
                r = saved[ref.instruction]
                ref.dev_score, ref.test_score, ref.error = (r.get("dev_score"),
                                                            r.get("test_score"), r.get("error"))
        for obs in self.searcher.observations:
            self.scores[obs.instruction] = (obs.score, list(obs.per_example))

    def reopen(self) -> None:
        """Undo a cap stop (the caps were raised on resume): the task continues."""
        log.info("[%s] continuing: %s no longer applies", self.name, self.stopped)
        self.stopped = None
        self.finished = self.test_done = False
        self.test_score = self.wall_s = None

    def save(self) -> None:
        self.out.write_state(self.name, self.state())

    def wall(self) -> float:
        if self.wall_s is not None:
            return self.wall_s
        return self.wall_before + (self.clock() - self.t_start if self.t_start else 0.0)

    # ---------------------------------------------------------------- start

    def begin(self, ports: Ports, projection: SoftPromptProjection | None, guard) -> None:
        """Attach the outside world; regenerate candidates a previous driver left in flight
        (same inputs give the same instruction) and score the reference instructions."""
        self.ports = ports
        self.projection = projection
        self.t_start = self.clock()
        if self.finished:
            return
        for cand in self.searcher.pending:
            self.candidates[cand.id] = cand
        self._generate(self.searcher.pending)
        self._start_references(guard)

    # ---------------------------------------------------------------- admission

    def fill(self, share: int, guard) -> None:
        """Start a suggestion if the task has room for more candidates in flight.

        Room is bounded by the pipeline ``share``, the budget, the candidate cap and the caps:
        a candidate is only issued if its expected spend fits under every cap next to what is
        spent and in flight. A task whose next candidate cannot fit even once its own work has
        landed is stopped; one that waits only for other tasks' work to land waits.
        """
        if self.finished or self.proposing:
            return
        s = self.searcher
        room = 0
        if self.stopped is None and self.room > 0:
            room = guard.admit(self, min(share - s.n_pending, self.room))
            if room == 0 and s.n_pending == 0:
                reason = guard.exhausted(self)
                if reason is not None:
                    self._stop(reason)
        if self.search_done:
            if (self.stopped is None and self.queries < self.budget and self.exhausted is None
                    and self.converged is None):
                self.exhausted = (f"bo.max_candidates={self.searcher.budget} reached after "
                                  f"{self.queries} of {self.budget} queries (the other "
                                  "candidates decoded to instructions already scored)")
                log.warning("[%s] %s; the search ends early", self.name, self.exhausted)
            if self.converged is not None and not self.test_started and not self.said_converged:
                self.said_converged = True
                log.info("[%s] %s; the search ends early", self.name, self.converged)
            if not self.test_started and not self._rescoring(guard):
                self._start_test(guard)
            return
        if self.stopped is not None or room <= 0:
            return
        suggestion = s.suggest(room)
        if suggestion.request is None:
            self._issue(list(suggestion.candidates))
            return
        self.proposing = True
        self.requested = room
        self.ports.propose(suggestion.compute, suggestion.request, self._on_proposed)

    def _on_proposed(self, result: Any, error: str | None) -> None:
        self.proposing = False
        admitted, self.requested = self.requested, 0
        if error is not None:
            log.warning("[%s] proposal failed (%s); using model-free points instead", self.name,
                        error)
            self._issue(self.searcher.fallback(admitted))
            return
        cands = self.searcher.accept(result)
        log.debug("[%s] proposal: %d points in %.1f s", self.name, len(cands),
                  float(getattr(result, "seconds", 0.0)))
        if not cands and self.searcher.n_pending == 0:  # every point was a near-duplicate
            cands = self.searcher.fallback(admitted)
        self._issue(cands)

    def _issue(self, cands: list[Candidate]) -> None:
        for cand in cands:
            self.candidates[cand.id] = cand
        self._generate(cands)

    def _generate(self, cands: list[Candidate]) -> None:
        if cands:
            self.ports.generate([self._request(c) for c in cands])

    def _request(self, cand: Candidate) -> GenerationRequest:
        soft = None
        if cand.z is not None:
            soft = self.projection(np.asarray(cand.z, dtype=np.float32))
        exemplars = self.splits.exemplars
        if cand.exemplars is not None:
            pool = self.splits.exemplar_pool
            exemplars = tuple(pool[i] for i in cand.exemplars)
        return GenerationRequest(f"{self.name}\x00{cand.id}", soft,
                                 induction_text(exemplars, self.cue), cand.temperature, cand.seed)

    def _stop(self, reason: str) -> None:
        """Stop issuing candidates; those in flight finish (without new paid calls)."""
        self.stopped = reason
        log.warning("[%s] stopping: %s", self.name, reason)
        self.save()

    # ---------------------------------------------------------------- evaluation

    def _prompts(self, instruction: str, examples: tuple[Example, ...]) -> list[str]:
        return [self.render(instruction, ex.input) for ex in examples]

    def _ask(self, prompts: list[str], done: DoneFn) -> None:
        self.prompts += len(prompts)
        self.ports.evaluate(prompts, done, self.name)

    def on_generated(self, cand_id: int, instruction: str) -> None:
        """A candidate's instruction arrived: reuse its scores, or score it on dev."""
        cand = self.candidates[cand_id]
        if instruction in self.scores:
            self._tell(cand, instruction, query=False, cached=True, calls=0)
            return
        if self.stopped is not None:
            self._tell(cand, instruction, query=False, cached=False, calls=0,
                       error=f"not evaluated: {self.stopped}")
            return
        if instruction in self.waiting:  # the same instruction is being scored right now
            self.waiting[instruction].append(cand)
            return
        self.waiting[instruction] = [cand]
        dev = self.splits.dev
        best = self.searcher.best()
        k = race.first_slice(self.n_dev, self.racing) if best is not None else 0
        if k:
            self._ask(self._prompts(instruction, dev[:k]),
                      lambda a, u, e: self._on_slice(instruction, k, a, u, e))
            return
        self._ask(self._prompts(instruction, dev),
                  lambda answers, usage, error: self._on_dev_scored(instruction, answers, usage,
                                                                    error))

    def _on_slice(self, instruction: str, k: int, answers: list, usage: Usage,
                  error: str | None) -> None:
        """The first dev slice of a raced candidate: stop it, or score the rest."""
        if error is not None:
            self._on_dev_scored(instruction, [], usage, error)
            return
        head = self._score(answers, self.splits.dev[:k])
        best = self.searcher.best()
        if race.stop_early(head, self.n_dev, best.score if best else None, self.racing_delta):
            self._on_dev_scored(instruction, answers, usage, None,
                                per_example=race.impute(head, self.n_dev), dev_examples=k)
            return

        def rest(answers2: list, usage2: Usage, error2: str | None) -> None:
            self._on_dev_scored(instruction, answers + list(answers2 or []),
                                sum_usage([usage, usage2]), error2)

        self._ask(self._prompts(instruction, self.splits.dev[k:]), rest)

    def _on_dev_scored(self, instruction: str, answers: list, usage: Usage,
                       error: str | None, *, per_example: list[float] | None = None,
                       dev_examples: int | None = None) -> None:
        self.usage.add(usage)
        if usage.calls and dev_examples is None:  # a full dev evaluation: the spend estimate
            self.eval_max = largest(self.eval_max, usage)
        first, *rest = self.waiting.pop(instruction)
        if error is not None:
            log.warning("[%s] candidate failed after retries: %s", self.name, error)
            self._tell(first, instruction, query=True, cached=False, calls=usage.calls,
                       error=error)
            for cand in rest:
                self._tell(cand, instruction, query=False, cached=False, calls=0, error=error)
            return
        if per_example is None:
            per_example = self._score(answers, self.splits.dev)
        else:
            self.raced[instruction] = dev_examples
            log.info("[%s] stopped after %d of %d dev examples (%.3f; cannot beat %.3f)",
                     self.name, dev_examples, self.n_dev, float(np.mean(per_example)),
                     self.searcher.best().score)
        self.scores[instruction] = (float(np.mean(per_example)), per_example)
        self._tell(first, instruction, query=True, cached=usage.calls == 0, calls=usage.calls)
        for cand in rest:
            self._tell(cand, instruction, query=False, cached=True, calls=0)

    def _score(self, answers: list, examples: tuple[Example, ...]) -> list[float]:
        return [score(self.task.metric, a, ex.answers)
                for a, ex in zip(answers, examples, strict=True)]

    def _tell(self, cand: Candidate, instruction: str, *, query: bool, cached: bool, calls: int,
              error: str | None = None) -> None:
        if error is None:
            value, per_example = self.scores[instruction]
            self.searcher.tell(cand.id, instruction, value, per_example)
        else:
            value = None
            self.searcher.tell(cand.id, instruction, None, None)
        self.candidates.pop(cand.id, None)
        if query:
            self.queries += 1
        record = {"task": self.name, "step": len(self.records) + 1, "candidate": cand.id,
                  "z": None if cand.z is None else [round(float(v), 6) for v in cand.z],
                  "instruction": instruction, "dev_score": value,
                  "query": self.queries if query else None, "cached": cached,
                  "api_calls": calls, "t": round(self.elapsed(), 3)}
        if cand.exemplars is not None:
            record["exemplars"] = list(cand.exemplars)
        if query and instruction in self.raced:
            record["dev_examples"] = self.raced[instruction]
        if error is not None:
            record["error"] = error
        self.records.append(record)
        self.save()  # state first: history.jsonl is rebuilt from it on resume
        self.out.append_history(record)
        best = self.searcher.best()
        log.info("[%s] %d/%d dev=%s best=%s%s  %r", self.name, self.queries, self.budget,
                 "failed" if value is None else f"{value:.3f}",
                 "n/a" if best is None else f"{best.score:.3f}",
                 "" if query else " (seen before: no query)", instruction[:100])

    # ---------------------------------------------------------------- references

    def _start_references(self, guard) -> None:
        for i, ref in enumerate(self.references):
            if ref.settled or f"ref{i}" in self.reservations:
                continue
            need = scaled(guard.per_query(self), (self.n_dev + self.n_test) / max(1, self.n_dev))
            reason = guard.blocked(self, need, 0, inflight=True, what="a reference instruction")
            if reason is not None:
                ref.error = f"not scored: {reason}"
                log.warning("[%s] reference instruction %r %s", self.name, ref.instruction[:60],
                            ref.error)
                continue
            self.reservations[f"ref{i}"] = need
            prompts = self._prompts(ref.instruction, self.splits.dev + self.splits.test)
            self._ask(prompts, lambda a, u, e, i=i: self._on_reference(i, a, u, e))

    def _on_reference(self, i: int, answers: list, usage: Usage, error: str | None) -> None:
        self.usage.add(usage)
        self.reservations.pop(f"ref{i}", None)
        ref = self.references[i]
        if error is not None:
            ref.error = error
            log.warning("[%s] reference instruction failed: %s", self.name, error)
        else:
            scores = self._score(answers, self.splits.dev + self.splits.test)
            ref.dev_score = float(np.mean(scores[:self.n_dev]))
            ref.test_score = float(np.mean(scores[self.n_dev:]))
            log.info("[%s] reference dev=%.3f test=%.3f  %r", self.name, ref.dev_score,
                     ref.test_score, ref.instruction[:100])
        self.save()
        self._maybe_finish()

    # ---------------------------------------------------------------- test split

    @property
    def extra_examples(self) -> tuple[Example, ...]:
        """Examples for re-scoring (:func:`izray.selection.extra_examples`)."""
        return select.extra_examples(self.splits, self.n_dev)

    def winner(self):
        """The instruction to test: the re-scoring's pick if there was one, else the best dev."""
        return select.winner(self.searcher.observations, self.searcher.best(), self.selection)

    def _rescoring(self, guard) -> bool:
        """Start or continue re-scoring the top candidates; True while it is in flight."""
        if self.rescore_top_k <= 0 or self.stopped is not None:
            return False
        if self.selection is not None:
            return not self.selection["done"]
        extra = self.extra_examples
        top = select.top_distinct(self.searcher.observations, self.rescore_top_k)
        if not extra or len(top) < 2:
            self.selection = select.skipped("nothing to re-score" if extra else "no extra examples")
            return False
        need = scaled(guard.per_query(self), len(extra) * len(top) / max(1, self.n_dev))
        both = sum_usage([need, guard.test_need(self)])
        reason = guard.blocked(self, both, 0, inflight=True, what="re-scoring the top candidates")
        if reason is not None:
            log.warning("[%s] no re-scoring: %s", self.name, reason)
            self.selection = select.skipped(reason)
            return False
        self.reservations["rescore"] = need
        self.selection = select.start(top, len(extra))
        log.info("[%s] re-scoring the top %d instructions on %d more examples", self.name,
                 len(top), len(extra))
        for i, o in enumerate(top):
            self._ask(self._prompts(o.instruction, extra),
                      lambda a, u, e, i=i: self._on_rescored(i, a, u, e))
        return True

    def _on_rescored(self, i: int, answers: list, usage: Usage, error: str | None) -> None:
        self.usage.add(usage)
        value = None if error is not None else float(np.mean(self._score(answers,
                                                                          self.extra_examples)))
        if select.record(self.selection, i, value, n_dev=self.n_dev, error=error):
            self.reservations.pop("rescore", None)
            pick = self.selection["winner"]
            if pick is not None:
                log.info("[%s] re-scored: %r wins", self.name, pick[:80])
        self.save()

    def _start_test(self, guard) -> None:
        best = self.winner()
        if best is None or self.stopped is not None:
            self.test_started = True
            log.warning("[%s] %s; no test evaluation", self.name,
                        self.stopped or "no candidate was scored")
            self._test_result(None)
            return
        reason = guard.test_blocked(self, inflight=False)
        if reason is not None:  # it cannot fit even when everything in flight has landed
            self.test_started = True
            self._stop(reason)
            self._test_result(None)
            return
        if guard.test_blocked(self, inflight=True) is not None:
            return  # fits once other tasks' work in flight has landed: wait for it
        self.test_started = True
        self.reservations["test"] = guard.test_need(self)
        log.info("[%s] search done (%d queries, %d candidates); scoring the best instruction "
                 "on %d test examples", self.name, self.queries, self.n_candidates, self.n_test)

        def done(answers: list, usage: Usage, error: str | None) -> None:
            self.usage.add(usage)
            self.reservations.pop("test", None)
            if error is not None:
                log.warning("[%s] test evaluation failed: %s", self.name, error)
                self._test_result(None)
                return
            self._test_result(float(np.mean(self._score(answers, self.splits.test))))

        self._ask(self._prompts(best.instruction, self.splits.test), done)

    def _test_result(self, test_score: float | None) -> None:
        self.test_score = test_score
        self.test_done = True
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.finished or not self.test_done or any(
                f"ref{i}" in self.reservations for i in range(len(self.references))):
            if not self.finished:
                self.save()
            return
        self.finished = True
        self.wall_s = self.wall()
        self.save()
        best = self.winner()
        log.info("[%s] done: test=%s dev=%s  %r", self.name,
                 "n/a" if self.test_score is None else f"{self.test_score:.3f}",
                 "n/a" if best is None else f"{best.score:.3f}",
                 best.instruction if best else "")
        self.ports.finished(self)

    # ---------------------------------------------------------------- summary

    def summary_row(self, usd_of: Callable[[Usage], float | None]) -> dict[str, Any]:
        """This task's entry in ``summary.json`` (see README "Outputs")."""
        best = self.winner()
        return {
            "strategy": self.searcher.strategy,
            "best_instruction": best.instruction if best else None,
            "dev_score": best.score if best else None,
            "test_score": self.test_score,
            "queries": self.queries,
            "candidates": self.n_candidates,
            "api_calls": self.usage.calls,
            "prompts": self.prompts,
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "wall_s": round(self.wall(), 3),
            "usd": usd_of(self.usage),
            "finished": self.finished,
            "stopped": self.stopped or self.exhausted,
            "converged": self.converged,
            "failed_queries": sum(1 for r in self.records if r.get("query") and "error" in r),
            "raced_queries": len(self.raced),
            "selection": self.selection,
            "metric": self.task.metric,
            "n_dev": self.n_dev,
            "n_test": self.n_test,
            "references": [asdict(r) for r in self.references],
        }
