"""CapGuard: what may start under the caps, on plain task records (no Ray)."""

from __future__ import annotations

from dataclasses import dataclass, field

from izray.admission import CapGuard
from izray.config import Caps, CapsConfig
from izray.costs import ESTIMATE_MARGIN
from izray.evaluation.ledger import Usage

PRIOR = Usage(calls=10, prompt_tokens=500, completion_tokens=100)


@dataclass
class Task:
    name: str
    usage: Usage = field(default_factory=Usage)
    queries: int = 0
    requested: int = 0
    eval_max: Usage | None = None
    prior: Usage = field(default_factory=lambda: PRIOR)
    reserved: Usage | None = None
    n_pending: int = 0
    n_dev: int = 10
    n_test: int = 20


def guard(tasks: list[Task], *, task: Caps = Caps(), run: Caps = Caps(),  # noqa: B008
          price: float | None = None) -> CapGuard:
    def usd(u: Usage) -> float | None:
        return None if price is None else (u.prompt_tokens + u.completion_tokens) * price

    return CapGuard(CapsConfig(task=task, run=run), {t.name: t for t in tasks}, usd)


def test_no_caps_admits_everything():
    a = Task("a", usage=Usage(10**9, 10**9, 10**9), queries=10**6)
    g = guard([a])
    assert g.admit(a, 7) == 7 and g.exhausted(a) is None
    assert g.test_blocked(a, inflight=True) is None


def test_admission_counts_work_in_flight_against_a_task_cap():
    a = Task("a", usage=Usage(calls=20), queries=2, n_pending=3)
    g = guard([a], task=Caps(api_calls=60))
    # 20 spent + 3 in flight x 10 = 50: one more candidate (10 calls) fits, two don't.
    assert g.admit(a, 4) == 1
    a.n_pending = 4
    assert g.admit(a, 4) == 0
    assert g.exhausted(a) is None  # once its own work lands there is room: wait, don't stop


def test_a_run_cap_shared_by_tasks_makes_one_wait_and_stops_when_spent():
    a = Task("a", usage=Usage(30, 1500, 300), queries=3, n_pending=2)
    b = Task("b")
    g = guard([a, b], run=Caps(api_calls=60))
    assert g.admit(b, 3) == 1  # 30 spent + a's 20 in flight + 10
    a.requested = 1  # a's proposal in flight counts too
    assert g.admit(b, 3) == 0
    assert g.exhausted(b) is None  # a's work will land: b waits
    a.n_pending = a.requested = 0
    a.usage = Usage(55, 2750, 550)
    assert g.admit(b, 3) == 0
    assert g.exhausted(b).startswith("caps.run.api_calls=60 reached (55 spent")


def test_estimates_learn_from_the_largest_evaluation_seen():
    a = Task("a", usage=Usage(10, 800, 40), queries=1, eval_max=Usage(10, 800, 40))
    g = guard([a], task=Caps(prompt_tokens=800 + 3 * 1000))
    assert g.per_query(a).prompt_tokens == 800 * ESTIMATE_MARGIN == 1000
    assert g.admit(a, 5) == 3


def test_usd_cap_and_the_test_evaluation():
    a = Task("a", usage=Usage(40, 2000, 400), queries=4, eval_max=Usage(10, 500, 100))
    g = guard([a], task=Caps(usd=3.0), price=0.001)  # $0.001 per token: spent $2.40
    # A dev evaluation is estimated at 625 + 125 tokens = $0.75: $3.15 > $3 -> no more queries.
    assert g.exhausted(a).startswith("caps.task.usd=3 reached (2.4000 spent")
    # The test evaluation is 2x a dev evaluation (20 vs 10 examples): $1.50 doesn't fit either.
    assert "the test evaluation needs ~1.5000" in g.test_blocked(a, inflight=False)
    g2 = guard([a], task=Caps(usd=4.0), price=0.001)
    assert g2.test_blocked(a, inflight=False) is None
    b = Task("b", reserved=Usage(20, 1000, 200))  # b's test in flight: $1.20
    g3 = guard([a, b], run=Caps(usd=4.5), price=0.001)
    assert g3.test_blocked(a, inflight=False) is None
    assert g3.test_blocked(a, inflight=True) is not None  # wait for b's test to land
