"""Evaluate many prompts concurrently on one client, reporting each call's outcome.

The :class:`Evaluator` never raises for one failed call: every prompt gets a
:class:`CallOutcome`. Only a fatal endpoint error (bad key, unknown model) is raised, since
every later call would fail the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from izray.errors import CallFailed
from izray.evaluation.client import BlackBoxClient


@dataclass(frozen=True)
class CallOutcome:
    """One prompt's result.

    Attributes:
        text: The answer, or ``None`` if the call failed.
        prompt_tokens: Billed prompt tokens (0 on failure).
        completion_tokens: Billed completion tokens (0 on failure).
        attempts: HTTP requests sent (retries included), successful or not.
        error: Why it failed, or ``None``.
    """

    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.text is not None


class Evaluator:
    """Bounded-concurrency batch calls.

    Args:
        client: The endpoint client.
        concurrency: Requests in flight at most.
    """

    def __init__(self, client: BlackBoxClient, concurrency: int) -> None:
        self.client = client
        self._sem = asyncio.Semaphore(concurrency)

    async def _one(self, prompt: str) -> CallOutcome:
        async with self._sem:
            try:
                r = await self.client.complete(prompt)
            except CallFailed as err:
                return CallOutcome(None, attempts=err.attempts, error=str(err))
            return CallOutcome(r.text, r.prompt_tokens, r.completion_tokens, r.attempts)

    async def evaluate(self, prompts: Sequence[str]) -> list[CallOutcome]:
        """Outcomes for ``prompts``, in order.

        Raises:
            EndpointError: the endpoint rejects the key or model (fatal for the run).
        """
        return list(await asyncio.gather(*(self._one(p) for p in prompts)))

