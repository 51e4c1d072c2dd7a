"""Evaluate many prompts concurrently on one client, reporting each call's outcome.

The :class:`Evaluator` never raises for one failed call: every prompt gets a
:class:`CallOutcome`. Only a fatal endpoint error (bad key, unknown model) is raised, since
every later call would fail the same way.

Pay once, inside the evaluator too: with ``settings`` and a ``journal`` it journals every
call's outcome the moment it completes (see :mod:`izray.evaluation.ledger`), answers prompts
it has answered before (``known``, e.g. reloaded from the journals after a restart) without
calling, and shares one call between identical prompts in flight at the same time. It also
journals each call's id just before it is sent, so a call whose answer died with its process
is known afterwards (:func:`izray.evaluation.ledger.lost_calls`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from izray.errors import CallFailed
from izray.evaluation.cache import cache_key
from izray.evaluation.client import BlackBoxClient
from izray.evaluation.ledger import CallRecord, Journal
from izray.testing.crash import crash_point


@dataclass(frozen=True)
class CallOutcome:
    """One prompt's result.

    Attributes:
        text: The answer, or ``None`` if the call failed.
        prompt_tokens: Billed prompt tokens (0 on failure, or when no call was needed).
        completion_tokens: Billed completion tokens.
        attempts: HTTP requests sent for this prompt here (0 when answered without a call).
        error: Why it failed, or ``None``.
        call_id: Unique id of the call that produced it (``None`` when no call was made).
        throttled: Attempts the server answered 429 (rate limited), for metrics.
    """

    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    error: str | None = None
    call_id: str | None = None
    throttled: int = 0

    @property
    def ok(self) -> bool:
        return self.text is not None


class Evaluator:
    """Bounded-concurrency batch calls.

    Args:
        client: The endpoint client.
        concurrency: Requests in flight at most.
        settings: Cache-key settings; enables ``known`` answers and in-flight sharing.
        journal: Where each call's outcome is written as it completes.
        known: ``cache key -> answer`` already paid for (e.g. from earlier journals).
    """

    def __init__(self, client: BlackBoxClient, concurrency: int,
                 settings: dict[str, Any] | None = None, journal: Journal | None = None,
                 known: dict[str, str] | None = None) -> None:
        self.client = client
        self.settings = settings
        self.journal = journal
        self.known = dict(known or {})
        self._sem = asyncio.Semaphore(concurrency)
        self._inflight: dict[str, asyncio.Future] = {}

    async def _call(self, prompt: str, sent=None) -> CallOutcome:
        """One call; ``sent(call_id)`` runs just before each of its requests leaves."""
        call_id = uuid.uuid4().hex
        async with self._sem:
            try:
                r = await self.client.complete(
                    prompt, None if sent is None else lambda _attempt: sent(call_id))
            except CallFailed as err:
                return CallOutcome(None, attempts=err.attempts, error=str(err), call_id=call_id,
                                   throttled=getattr(err, "throttled", 0))
            return CallOutcome(r.text, r.prompt_tokens, r.completion_tokens, r.attempts,
                               call_id=call_id, throttled=r.throttled)

    async def _one(self, prompt: str, tag: str) -> CallOutcome:
        if self.settings is None:
            return await self._call(prompt)
        key = cache_key(self.settings, prompt)
        if key in self.known:
            return CallOutcome(self.known[key])
        if key in self._inflight:  # someone is paying for this very prompt right now
            shared = await asyncio.shield(self._inflight[key])
            return replace(shared, prompt_tokens=0, completion_tokens=0, attempts=0, call_id=None,
                           throttled=0)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            journal = self.journal
            outcome = await self._call(
                prompt, None if journal is None else lambda cid: journal.sent(cid, tag, key))
            crash_point("answer")
            if self.journal is not None:
                self.journal.append(CallRecord(outcome.call_id, tag, key, outcome.ok, outcome.text,
                                               outcome.prompt_tokens, outcome.completion_tokens,
                                               outcome.attempts, outcome.error))
                crash_point("journal")
            if outcome.ok:
                self.known[key] = outcome.text
            fut.set_result(outcome)
            return outcome
        except BaseException as err:
            fut.set_exception(err)
            fut.exception()  # mark retrieved: waiters get it through shield()
            raise
        finally:
            del self._inflight[key]

    async def evaluate(self, prompts: Sequence[str], tag: str = "") -> list[CallOutcome]:
        """Outcomes for ``prompts``, in order.

        Args:
            prompts: The prompts.
            tag: Who pays (the task name), recorded in the journal.

        Raises:
            EndpointError: the endpoint rejects the key or model (fatal for the run).
        """
        return list(await asyncio.gather(*(self._one(p, tag) for p in prompts)))
