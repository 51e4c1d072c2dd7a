"""Admission under the caps: may the next candidate (or a test evaluation) start?

The driver asks :class:`CapGuard` before it issues candidates and before it scores a winner
on the test split. The guard adds the new work's expected spend to what every task has spent
and what its work in flight is expected to spend, and checks the task's and the run's caps
(:func:`izray.costs.cap_exceeded`). It works on the driver's task records through a small
read-only view (:class:`TaskView`), so it is testable without Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from izray.config import CapsConfig
from izray.costs import any_caps, cap_exceeded, per_query_estimate, scaled
from izray.evaluation.ledger import Usage


class TaskView(Protocol):
    """What the guard reads of one task (:class:`izray.lifecycle.TaskRun` provides it)."""

    name: str
    usage: Usage  # spent so far
    queries: int  # paid queries (distinct instructions scored)
    requested: int  # candidates asked of a proposal in flight
    eval_max: Usage | None  # largest dev evaluation seen
    prior: Usage  # estimate of one dev evaluation before any was seen
    reserved: Usage | None  # estimate of the test/reference evaluations in flight
    n_pending: int  # candidates issued, not yet told
    n_dev: int
    n_test: int


#: (task spend, task queries, run spend, run queries)
Totals = tuple[Usage, int, Usage, int]


class CapGuard:
    """Decides what may start under ``caps.task`` and ``caps.run``.

    Args:
        caps: The run's caps.
        tasks: Every task of the run, by name (a live view: the guard never copies it).
        usd_of: ``Usage -> float | None``, the cost of usage (``None``: no price known).
    """

    def __init__(self, caps: CapsConfig, tasks: Mapping[str, TaskView],
                 usd_of: Callable[[Usage], float | None]) -> None:
        self.caps = caps
        self.tasks = tasks
        self.usd_of = usd_of
        self.active = any_caps(caps.task, caps.run)

    def per_query(self, t: TaskView) -> Usage:
        """Expected spend of one dev evaluation (:func:`izray.costs.per_query_estimate`)."""
        return per_query_estimate(t.prior, t.eval_max, t.n_dev)

    def test_need(self, t: TaskView) -> Usage:
        """Expected spend of the test evaluation (the dev estimate scaled to n_test)."""
        return scaled(self.per_query(t), t.n_test / max(1, t.n_dev))

    def admit(self, t: TaskView, room: int) -> int:
        """How many of ``room`` new candidates fit next to the work in flight."""
        if room <= 0 or not self.active:
            return max(room, 0)
        per = self.per_query(t)
        totals = self._totals(t, inflight=True)
        for k in range(room, 0, -1):
            if self._exceeded(totals, scaled(per, k), k, "the next query") is None:
                return k
        return 0

    def exhausted(self, t: TaskView) -> str | None:
        """Why ``t``'s next query cannot fit even once all work in flight has landed."""
        return self.blocked(t, self.per_query(t), 1, inflight=False)

    def test_blocked(self, t: TaskView, *, inflight: bool) -> str | None:
        """Why ``t``'s test evaluation cannot start (now, or ever with ``inflight=False``)."""
        return self.blocked(t, self.test_need(t), 0, inflight=inflight,
                            what="the test evaluation")

    def blocked(self, t: TaskView, need: Usage, need_queries: int, *, inflight: bool,
                what: str = "the next query") -> str | None:
        """The cap that ``need`` more would cross for ``t`` (task or run scope), or None.

        Args:
            t: The task the work is for.
            need: The work's expected spend.
            need_queries: Candidates it adds (0 for a test evaluation).
            inflight: Count the expected spend of all work in flight as spent.
            what: Names the work in the message.
        """
        if not self.active:
            return None
        return self._exceeded(self._totals(t, inflight), need, need_queries, what)

    def _exceeded(self, totals: Totals, need: Usage, need_queries: int,
                  what: str) -> str | None:
        task_u, task_q, run_u, run_q = totals
        return (cap_exceeded(self.caps.task, task_u, task_q, need, need_queries, self.usd_of,
                             "task", what)
                or cap_exceeded(self.caps.run, run_u, run_q, need, need_queries, self.usd_of,
                                "run", what))

    def _totals(self, t: TaskView, inflight: bool) -> Totals:
        task_u, task_q, run_u, run_q = Usage(), 0, Usage(), 0
        for other in self.tasks.values():
            u = Usage(other.usage.calls, other.usage.prompt_tokens, other.usage.completion_tokens)
            q = other.queries
            if inflight:
                n = other.n_pending + other.requested
                if n:
                    u.add(scaled(self.per_query(other), n))
                if other.reserved is not None:
                    u.add(other.reserved)
                q += n
            run_u.add(u)
            run_q += q
            if other is t:
                task_u, task_q = u, q
        return task_u, task_q, run_u, run_q
