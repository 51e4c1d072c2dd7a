"""The call broker: every black-box prompt is paid for at most once.

A request for answers to some prompts is served, per prompt, from

1. the persistent response cache (answered before, in this run or an earlier one),
2. a call for the same prompt already in flight (its answer is shared when it lands),
3. a new call, batched with the request's other new prompts into one evaluator-actor call.

The broker is single-threaded, driven by the driver's event loop: it registers the Ray refs
it waits on through ``register(ref, callback)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray

from izray.errors import IzrayError
from izray.evaluation import CachedAnswer, CallOutcome, ResponseCache, cache_key
from izray.evaluation.ledger import CallRecord, Ledger, Usage
from izray.testing.crash import crash_point

#: ``done(answers, usage, error)``: answers align with the prompts (``None`` where a call
#: failed); ``usage`` is what *this* request paid; ``error`` is the first failure, if any.
DoneFn = Callable[[list[str | None], "Usage", str | None], None]


def get_unwrapped(ref: ray.ObjectRef):
    """``ray.get`` that re-raises izray errors from actors as themselves (their one-line
    message, not Ray's remote traceback)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, IzrayError):
            raise cause from None
        raise


@dataclass(eq=False)
class _Request:
    keys: list[str]
    answers: dict[str, str]
    errors: dict[str, str]
    waiting: set[str]
    done: DoneFn
    usage: Usage = field(default_factory=Usage)
    fired: bool = False


class CallBroker:
    """Cache, in-flight deduplication and dispatch of black-box prompts.

    Args:
        cache: The persistent response cache.
        ledger: Where every paid call is recorded (by task) before its answer is used.
        settings: Black-box settings that, with the prompt, determine an answer (cache key).
        submit: ``submit(prompts, tag, route)`` sends prompts to an evaluator actor (chosen
            by ``route``, the request's first prompt); returns a Ray ref to
            ``list[CallOutcome]``.
        finish: Tells the evaluator pool a ref completed.
        register: Makes the driver call ``callback(ref)`` when ``ref`` is ready.
    """

    def __init__(self, cache: ResponseCache, ledger: Ledger, settings: dict[str, Any],
                 submit: Callable[[list[str], str, str], ray.ObjectRef],
                 finish: Callable[[ray.ObjectRef], None],
                 register: Callable[[ray.ObjectRef, Callable], None]) -> None:
        self.cache = cache
        self.ledger = ledger
        self.settings = settings
        self.submit = submit
        self.finish = finish
        self.register = register
        self._inflight: dict[str, list[_Request]] = {}
        self.shared = 0  # prompts answered by a call another request had in flight
        # Per tag, for metrics: prompts answered without a new call (response cache, a call
        # in flight or already answered in an evaluator), and 429 responses seen.
        self.cached: dict[str, int] = {}
        self.throttled: dict[str, int] = {}

    def request(self, prompts: list[str], done: DoneFn, tag: str = "") -> None:
        """Answer ``prompts``; ``done`` is called exactly once (maybe immediately).

        Args:
            prompts: The prompts.
            done: Callback with the answers, this request's usage and the first error.
            tag: Who pays for new calls (the task name), for the ledger.
        """
        keys = [cache_key(self.settings, p) for p in prompts]
        hits = self.cache.get_many(keys)
        req = _Request(keys, {k: a.text for k, a in hits.items()}, {}, set(), done)
        new: dict[str, str] = {}
        shared = 0
        for key, prompt in zip(keys, prompts, strict=True):
            if key in req.answers or key in req.waiting:
                continue
            req.waiting.add(key)
            if key in self._inflight:
                self._inflight[key].append(req)
                shared += 1
            else:
                self._inflight[key] = [req]
                new[key] = prompt
        self.shared += shared
        if hits or shared:
            self.cached[tag] = self.cached.get(tag, 0) + len(hits) + shared
        if new:
            # Routed by the whole request's first prompt: a resumed driver asks the same
            # request again, so what is still new goes where its calls are in flight.
            ref = self.submit(list(new.values()), tag, prompts[0])
            new_keys = list(new)
            self.register(ref, lambda r: self._on_outcomes(r, new_keys, req, tag))
        self._maybe_done(req)

    def _on_outcomes(self, ref: ray.ObjectRef, keys: list[str], payer: _Request,
                     tag: str) -> None:
        self.finish(ref)
        outcomes: list[CallOutcome] = get_unwrapped(ref)
        self.ledger.record(
            CallRecord(oc.call_id, tag, key, oc.ok, None, oc.prompt_tokens, oc.completion_tokens,
                       oc.attempts, oc.error)
            for key, oc in zip(keys, outcomes, strict=True) if oc.call_id is not None)
        crash_point("ledger")
        fresh: dict[str, CachedAnswer] = {}
        for key, oc in zip(keys, outcomes, strict=True):
            throttled = getattr(oc, "throttled", 0)  # 0 from an older izray's actor
            if throttled:
                self.throttled[tag] = self.throttled.get(tag, 0) + throttled
            if oc.ok and oc.call_id is None:  # the evaluator answered it without a call
                self.cached[tag] = self.cached.get(tag, 0) + 1
            payer.usage.calls += oc.attempts
            payer.usage.prompt_tokens += oc.prompt_tokens
            payer.usage.completion_tokens += oc.completion_tokens
            if oc.ok:
                fresh[key] = CachedAnswer(oc.text, oc.prompt_tokens, oc.completion_tokens)
        self.cache.put_many(fresh)
        touched: list[_Request] = []
        for key, oc in zip(keys, outcomes, strict=True):
            for req in self._inflight.pop(key, []):
                req.waiting.discard(key)
                if oc.ok:
                    req.answers[key] = oc.text
                else:
                    req.errors[key] = oc.error or "call failed"
                touched.append(req)
        for req in dict.fromkeys(touched):
            self._maybe_done(req)

    @staticmethod
    def _maybe_done(req: _Request) -> None:
        if req.waiting or req.fired:
            return
        req.fired = True
        answers = [req.answers.get(k) for k in req.keys]
        error = next(iter(req.errors.values()), None)
        req.done(answers, req.usage, error)

    @property
    def inflight(self) -> int:
        return len(self._inflight)
