"""Tests of izray.lifecycle.TaskRun without Ray: budget of paid queries, duplicates, the
candidate cap, failures, references, caps, test evaluation and resume, through fake ports."""

from __future__ import annotations

import json
from collections import deque

import pytest

from izray.admission import CapGuard
from izray.config import Caps, CapsConfig
from izray.evaluation.ledger import Usage
from izray.lifecycle import Ports, Reference, TaskRun
from izray.report import RunDir
from izray.search import make_searcher
from izray.softprompt import SoftPromptProjection
from izray.tasks import load_task, make_splits
from izray.tasks.builtin import PLURALS

PLURAL = dict(PLURALS)

TEMPLATE = "Instruction: {i}\nInput: {x}\nOutput:"


def render(instruction: str, x: str) -> str:
    return TEMPLATE.format(i=instruction, x=x)


class World:
    """Fake pools: generation and evaluation are queued and drained like the driver does."""

    def __init__(self, decode, answer, fail=lambda prompts: False):
        self.decode, self.answer, self.fail = decode, answer, fail
        self.gen: deque = deque()
        self.evals: deque = deque()
        self.generated: list = []
        self.paid: list[str] = []
        self.finished: list = []

    def ports(self) -> Ports:
        def propose(compute, request, done):
            done(compute(request), None)

        return Ports(generate=self.gen.extend,
                     evaluate=lambda prompts, done, tag: self.evals.append((prompts, done)),
                     propose=propose, finished=self.finished.append)

    def drain(self, run: TaskRun) -> bool:
        busy = bool(self.gen or self.evals)
        while self.gen:
            req = self.gen.popleft()
            self.generated.append(req)
            run.on_generated(int(req.key.split("\x00")[1]), self.decode(req))
        while self.evals:
            prompts, done = self.evals.popleft()
            self.paid.extend(prompts)
            failed = self.fail(prompts)
            answers = [None if failed else self.answer(p) for p in prompts]
            done(answers, Usage(len(prompts), 10 * len(prompts), len(prompts)),
                 "HTTP 500 after 3 attempts" if failed else None)
        return busy


def plural_answer(prompt: str) -> str:
    instruction = prompt.split("\n")[0]
    word = prompt.split("Input: ")[1].split("\n")[0]
    return PLURAL[word] if "plural" in instruction else word


def make_run(tmp_path, strategy="uniform", budget=6, cap=None, caps=None, references=(),
             name="run", **extra):
    task = load_task("plural")
    splits = make_splits(task, 0, n_exemplars=5, n_dev=8, n_test=10)
    common = {"budget": cap or 5 * budget, "batch_size": 3, "seed": 1}
    if strategy == "uniform":
        searcher = make_searcher("uniform", dim=4, **common)
    elif strategy == "ape":
        searcher = make_searcher("ape", pool_size=len(splits.exemplar_pool), n_exemplars=3,
                                 **common)
    else:
        searcher = make_searcher("instructzero", dim=4, n_init=3, **common)
    out = RunDir(tmp_path / name)
    extra.setdefault("stop_at_max", False)  # this world has perfect instructions
    run = TaskRun(task, splits, searcher, budget=budget, render=render, cue="The instruction was to",
                  out=out, elapsed=lambda: 0.0, clock=lambda: 0.0,
                  prior=Usage(8, 400, 80), references=[Reference(r) for r in references],
                  **extra)
    guard = CapGuard(caps or CapsConfig(), {run.name: run}, lambda u: None)
    return run, guard, out


def drive(run, guard, world, share=3, steps=500):
    projection = SoftPromptProjection.create(4, 2, 8, 1.0, 1.0, seed=0)
    run.begin(world.ports(), projection, guard)
    for _ in range(steps):
        if run.finished:
            return
        run.fill(share, guard)
        if not world.drain(run) and not run.finished:
            run.fill(share, guard)
            if not world.drain(run):
                pytest.fail("the task neither finished nor had work in flight")
    pytest.fail("the task did not finish")


def by_sign(req) -> str:
    """Only 4 distinct instructions over the box: the signs of two soft-prompt coordinates."""
    a, b = float(req.soft[0, 0]) > 0, float(req.soft[1, 3]) > 0
    return f"Write the {'plural' if a else 'word'} {'now' if b else 'later'}."


def test_budget_counts_distinct_instructions_and_duplicates_are_free(tmp_path):
    world = World(by_sign, plural_answer)
    run, guard, out = make_run(tmp_path, budget=3)
    drive(run, guard, world)
    row = run.summary_row(lambda u: None)
    assert row["queries"] == 3 and row["strategy"] == "uniform"
    assert row["candidates"] == len(run.records) >= 3
    queries = [r for r in run.records if r["query"] is not None]
    assert [r["query"] for r in queries] == [1, 2, 3]
    assert len({r["instruction"] for r in queries}) == 3
    # Every candidate is an observation for the searcher, duplicates included.
    assert run.searcher.n_observed == row["candidates"]
    assert all(r["cached"] and r["api_calls"] == 0 for r in run.records if r["query"] is None)
    # Paid prompts: 3 dev evaluations of 8 and one test evaluation of 10.
    assert len(world.paid) == row["prompts"] == 3 * 8 + 10
    assert row["test_score"] is not None and row["stopped"] is None and row["finished"]
    assert world.finished == [run]
    out.close()


def test_candidate_cap_ends_a_search_stuck_on_known_instructions(tmp_path):
    world = World(by_sign, plural_answer)
    run, guard, out = make_run(tmp_path, budget=10, cap=12)
    drive(run, guard, world)
    row = run.summary_row(lambda u: None)
    assert row["candidates"] == 12 and row["queries"] <= 4
    assert "bo.max_candidates=12 reached" in row["stopped"]
    assert row["test_score"] is not None  # the candidate cap is no spending cap: test is scored
    out.close()


def test_failed_evaluation_is_a_query_and_a_later_duplicate_is_scored_again(tmp_path):
    calls = {"n": 0}

    def fail(prompts):  # the first dev evaluation fails, later ones succeed
        calls["n"] += 1
        return calls["n"] == 1

    world = World(lambda req: "Write the plural.", plural_answer, fail=fail)
    run, guard, out = make_run(tmp_path, budget=2)
    drive(run, guard, world, share=1)
    queries = [r for r in run.records if r["query"] is not None]
    assert [r["query"] for r in queries] == [1, 2]
    assert "error" in queries[0] and queries[0]["dev_score"] is None
    assert queries[1]["dev_score"] == 1.0
    assert run.summary_row(lambda u: None)["failed_queries"] == 1
    out.close()


def test_references_are_scored_on_dev_and_test_and_never_queries(tmp_path):
    world = World(by_sign, plural_answer)
    refs = ["Write the plural form.", "Repeat the word."]
    run, guard, out = make_run(tmp_path, budget=2, references=refs)
    drive(run, guard, world)
    row = run.summary_row(lambda u: None)
    assert row["queries"] == 2
    got = {r["instruction"]: r for r in row["references"]}
    assert got["Write the plural form."]["dev_score"] == 1.0
    assert got["Write the plural form."]["test_score"] == 1.0
    assert got["Repeat the word."]["dev_score"] == 0.0
    assert row["prompts"] == 2 * 8 + 10 + 2 * (8 + 10)
    assert all(r["instruction"] not in refs for r in run.records)
    out.close()


def test_a_cap_stops_the_task_without_a_test_evaluation(tmp_path):
    world = World(by_sign, plural_answer)
    caps = CapsConfig(task=Caps(api_calls=20))  # room for two 8-call evaluations
    run, guard, out = make_run(tmp_path, budget=6, caps=caps)
    drive(run, guard, world, share=1)
    row = run.summary_row(lambda u: None)
    assert row["queries"] == 2 and row["test_score"] is None
    assert row["stopped"].startswith("caps.task.api_calls=20 reached")
    out.close()


def test_ape_requests_have_no_soft_prompt_and_sample_exemplar_subsets(tmp_path):
    world = World(lambda req: f"Instruction {req.seed % 5}.", plural_answer)
    run, guard, out = make_run(tmp_path, strategy="ape", budget=4)
    drive(run, guard, world)
    reqs = world.generated
    assert reqs and all(r.soft is None and r.temperature == 0.9 for r in reqs)
    assert len({r.seed for r in reqs}) == len(reqs)
    assert len({r.text for r in reqs}) > 1  # different exemplars per candidate
    pool = {ex.input for ex in run.splits.exemplar_pool}
    dev = {ex.input for ex in run.splits.dev}
    for r in reqs:
        shown = {line[len("Input: "):] for line in r.text.splitlines() if line.startswith("Input: ")}
        assert len(shown) == 3 and shown <= pool and not shown & dev
    assert all(rec["z"] is None and len(rec["exemplars"]) == 3 for rec in run.records)
    out.close()


@pytest.mark.parametrize("strategy", ["uniform", "ape", "instructzero"])
def test_restore_continues_like_an_uninterrupted_run(tmp_path, strategy):
    def decode(req):
        key = req.seed if req.soft is None else round(float(req.soft.sum()), 1)
        return f"Write the plural {hash(str(key)) % 7}."

    world = World(decode, plural_answer)
    full, guard, out = make_run(tmp_path, strategy=strategy, budget=5, name="full")
    drive(full, guard, world)
    out.close()

    # Interrupted: the state once 3 candidates are told.
    world2 = World(decode, plural_answer)
    part, guard2, out2 = make_run(tmp_path, strategy=strategy, budget=5, name="part")
    projection = SoftPromptProjection.create(4, 2, 8, 1.0, 1.0, seed=0)
    part.begin(world2.ports(), projection, guard2)
    while len(part.records) < 3:
        part.fill(3, guard2)
        world2.drain(part)
    state = json.loads(json.dumps(part.state()))
    out2.close()

    world3 = World(decode, plural_answer)
    resumed, guard3, out3 = make_run(tmp_path, strategy=strategy, budget=5, name="resumed")
    resumed.restore(state, "state.json")
    assert resumed.queries == part.queries and len(resumed.records) == len(part.records) >= 3
    drive(resumed, guard3, world3)
    assert [r["instruction"] for r in resumed.records] == [r["instruction"] for r in full.records]
    assert resumed.summary_row(lambda u: None)["dev_score"] == full.summary_row(
        lambda u: None)["dev_score"]
    out3.close()


def test_restore_refuses_another_strategy(tmp_path):
    from izray.errors import RunStateError

    run, _, out = make_run(tmp_path, strategy="uniform", name="a")
    other, _, out2 = make_run(tmp_path, strategy="ape", name="b")
    with pytest.raises(RunStateError, match="strategy 'uniform'"):
        other.restore(run.state(), "state/plural.json")
    out.close()
    out2.close()


def by_id(req) -> str:
    """A new instruction per candidate; every third one asks for the plural."""
    cid = int(req.key.split("\x00")[1])
    return f"Write the {'plural' if cid % 3 == 0 else 'word'} (v{cid})."


def test_racing_stops_hopeless_candidates_after_a_slice_and_imputes_the_rest(tmp_path):
    world = World(by_id, plural_answer)
    run, guard, out = make_run(tmp_path, budget=9, racing=0.25, racing_delta=0.1)
    drive(run, guard, world, share=1)
    row = run.summary_row(lambda u: None)
    queries = [r for r in run.records if r["query"] is not None]
    assert row["queries"] == len(queries) == 9
    raced = [r for r in queries if "dev_examples" in r]
    # Candidate 0 (plural) is scored in full: nothing to beat yet. After it, every "word"
    # candidate scores 0 on its first 2 of 8 examples and cannot reach 1.0: stopped.
    assert queries[0]["instruction"].startswith("Write the plural") and "dev_examples" not in queries[0]
    assert {r["instruction"] for r in raced} == {r["instruction"] for r in queries[1:]
                                                if "word" in r["instruction"]}
    assert all(r["dev_examples"] == 2 and r["dev_score"] == 0.0 for r in raced)
    assert all("dev_examples" not in r for r in queries if "plural" in r["instruction"])
    assert row["raced_queries"] == len(raced) >= 5
    # Paid: full dev for the plural ones, 2 examples for the raced ones, then the test.
    assert len(world.paid) == row["prompts"] == 8 * (9 - len(raced)) + 2 * len(raced) + 10
    # The searcher saw 8 per-example scores for each (the missing ones imputed).
    assert all(len(o.per_example) == 8 for o in run.searcher.observations)
    assert row["test_score"] == 1.0
    # Resume keeps which queries were raced.
    state = json.loads((tmp_path / "run" / "state" / "plural.json").read_text())
    assert len(state["raced"]) == len(raced)
    out.close()


def test_racing_off_scores_every_candidate_in_full(tmp_path):
    world = World(by_id, plural_answer)
    run, guard, out = make_run(tmp_path, budget=6)
    drive(run, guard, world, share=1)
    assert all("dev_examples" not in r for r in run.records)
    assert len(world.paid) == 6 * 8 + 10
    out.close()


def test_rescoring_tests_the_best_over_dev_and_extra_examples(tmp_path):
    """Two instructions tie on dev; on the extra examples only the plural one is right: the
    re-scoring picks it, and its calls are paid and counted."""
    world = World(by_id, plural_answer)
    run, guard, out = make_run(tmp_path, budget=6, rescore_top_k=3)
    extra = run.extra_examples
    assert extra and not set(extra) & set(run.splits.dev + run.splits.test + run.splits.exemplars)
    drive(run, guard, world, share=1)
    row = run.summary_row(lambda u: None)
    sel = row["selection"]
    assert sel["done"] and len(sel["rows"]) == 3 and sel["n_extra"] == len(extra)
    assert sel["winner"] == row["best_instruction"] and "plural" in sel["winner"]
    assert all(r["extra_score"] is not None for r in sel["rows"])
    assert len(world.paid) == row["prompts"] == 6 * 8 + 3 * len(extra) + 10
    out.close()


def test_rescoring_picks_a_lower_dev_score_that_holds_up(tmp_path):
    """The dev winner is lucky on dev (its answers are right only there); the runner-up is
    right everywhere, so dev + extra picks the runner-up."""
    run, guard, out = make_run(tmp_path, budget=4, rescore_top_k=2)
    dev_inputs = {ex.input for ex in run.splits.dev}

    def answer(prompt):
        word = prompt.split("Input: ")[1].split("\n")[0]
        if "lucky" in prompt:
            return PLURAL[word] if word in dev_inputs else word
        if "steady" in prompt:  # right on all but one dev example, and on every other example
            return word if word == run.splits.dev[0].input else PLURAL[word]
        return word

    names = ["lucky", "steady", "bad", "bad2"]
    world = World(lambda req: f"Plural, {names[int(req.key.split(chr(0))[1]) % 4]}.", answer)
    drive(run, guard, world, share=1)
    row = run.summary_row(lambda u: None)
    dev = {r["instruction"]: r["dev_score"] for r in run.records if r["query"]}
    assert dev["Plural, lucky."] == 1.0 > dev["Plural, steady."] == 7 / 8
    assert row["best_instruction"] == "Plural, steady." and row["dev_score"] == 7 / 8
    assert row["test_score"] == 1.0
    # Restore keeps the finished selection.
    fresh, _, out2 = make_run(tmp_path, budget=4, rescore_top_k=2, name="run2")
    fresh.restore(json.loads((tmp_path / "run" / "state" / "plural.json").read_text()), "x")
    assert fresh.winner().instruction == "Plural, steady."
    out.close()
    out2.close()


def test_stop_at_max_ends_the_search_at_a_perfect_dev_score(tmp_path):
    # Every instruction with "plural" scores 1.0 on dev; nothing after the first can win.
    world = World(by_sign, plural_answer)
    run, guard, out = make_run(tmp_path, budget=20, cap=100, stop_at_max=True)
    drive(run, guard, world)
    row = run.summary_row(lambda u: None)
    first = next(r for r in run.records if r["dev_score"] == 1.0)
    assert row["dev_score"] == 1.0 and row["test_score"] is not None
    assert row["best_instruction"] == first["instruction"]
    assert row["queries"] < 20 and "is the maximum (bo.stop_at_max)" in row["converged"]
    assert row["stopped"] is None  # not a cap: the search had nothing left to find
    # Only the batch in flight when the perfect score arrived was still told.
    assert len(run.records) <= first["step"] + 3
    out.close()


def test_without_stop_at_max_the_budget_is_spent(tmp_path):
    world = World(by_sign, plural_answer)
    run, guard, out = make_run(tmp_path, budget=4, cap=100, stop_at_max=False)
    drive(run, guard, world)
    row = run.summary_row(lambda u: None)
    assert row["queries"] == 4 and row["converged"] is None and row["dev_score"] == 1.0
    out.close()
