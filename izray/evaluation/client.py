"""The black-box LLM: one OpenAI-compatible endpoint, called with explicit retry decisions.

Retries are ours, not the SDK's (``max_retries=0``), so every attempt is counted and logged:

* 429, 408, 409, 5xx, timeouts, connection errors, malformed bodies: retried with
  exponential backoff and full jitter, or exactly the server's ``Retry-After`` when it gives
  one, up to ``max_attempts``; then the call is :class:`~izray.errors.CallFailed`.
* 401, 403, 404 and a 429 saying the quota is exhausted: :class:`~izray.errors.EndpointError`
  at once, with what to fix. Retrying cannot help and would burn time.
* Other 4xx (e.g. prompt too long): this call fails, without retrying.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import openai
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from izray import _constants as C
from izray.config import redact_url
from izray.errors import CallFailed, EndpointError
from izray.evaluation.ratelimit import estimate_tokens

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class Limiter(Protocol):
    """What the client needs from a (possibly shared, remote) rate limiter."""

    async def reserve(self, tokens: int) -> float: ...
    async def settle(self, estimated: int, actual: int) -> None: ...
    async def on_throttled(self, retry_after: float | None) -> None: ...
    async def on_success(self) -> None: ...


@dataclass(frozen=True)
class CallResult:
    """A successful call: the answer text and what it cost.

    Attributes:
        text: The completion (first choice).
        prompt_tokens: Prompt tokens billed (from ``usage``, else estimated).
        completion_tokens: Completion tokens billed.
        attempts: HTTP requests sent for this call (1 + retries).
        throttled: How many of them the server answered 429 (rate limited).
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    throttled: int = 0


class MalformedResponse(Exception):
    """The endpoint answered 2xx with a body that is not a usable completion."""


def retry_after_seconds(err: BaseException) -> float | None:
    """Seconds from a ``Retry-After`` / ``retry-after-ms`` header, if the error carries one.

    The one place a server's wait is read: the value is clamped to
    ``[0, RETRY_AFTER_MAX_S]`` (``inf``, ``1e400`` or a day would otherwise wedge the shared
    limiter for every run on the endpoint), and a value that is neither a number nor an HTTP
    date counts as absent (the 429 is still retried, with backoff).
    """
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    seconds = None
    ms = _number(headers.get("retry-after-ms"))
    if ms is not None:
        seconds = ms / 1000.0
    else:
        value = headers.get("retry-after")
        seconds = _number(value)
        if seconds is None and value:
            try:
                parsed = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError, OverflowError):
                parsed = None
            if parsed is not None:
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=datetime.UTC)
                seconds = parsed.timestamp() - time.time()
    if seconds is None:
        return None
    return min(max(0.0, seconds), C.RETRY_AFTER_MAX_S)


def _number(value: str | None) -> float | None:
    """A header's value as a number of seconds (``inf`` kept: it clamps to the cap), or None."""
    if not value:
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return None if math.isnan(x) else x


def _status(err: BaseException) -> int | None:
    return getattr(err, "status_code", None)


def _out_of_quota(err: BaseException) -> bool:
    return _status(err) == 429 and "insufficient_quota" in str(getattr(err, "body", "") or err)


def is_retryable(err: BaseException) -> bool:
    """Whether another attempt can succeed (see the module docstring for the table)."""
    # A truncated or non-JSON 2xx body surfaces from the SDK as a JSONDecodeError.
    if isinstance(err, (openai.APITimeoutError, openai.APIConnectionError, MalformedResponse,
                        json.JSONDecodeError)):
        return True
    if isinstance(err, openai.APIResponseValidationError):
        return True
    if _out_of_quota(err):
        return False
    status = _status(err)
    return status in RETRYABLE_STATUS or (status is not None and status >= 500)


def fatal_error(err: BaseException, base_url: str, model: str, key_env: str) -> EndpointError | None:
    """An :class:`EndpointError` for errors no retry can fix, else ``None``."""
    status = _status(err)
    if status == 401:
        return EndpointError(f"401 from {base_url}: the API key was rejected; put a valid key in "
                             f"${key_env} (evaluator.api_key_env) or evaluator.api_key_file")
    if status == 403:
        return EndpointError(f"403 from {base_url}: the key may not use model {model!r}; check "
                             "the key's permissions or evaluator.model")
    if status == 404:
        return EndpointError(f"404 from {base_url}: model {model!r} or the API path was not found;"
                             " check evaluator.model, evaluator.base_url (usually ends in /v1) "
                             "and evaluator.api")
    if _out_of_quota(err):
        return EndpointError(f"429 insufficient_quota from {base_url}: the account is out of "
                             "credit; add credit or use another key")
    return None


class BlackBoxClient:
    """Calls one model at one endpoint.

    Args:
        base_url: OpenAI-compatible endpoint (``.../v1``).
        model: Model name.
        api: ``chat`` or ``completions``.
        api_key: The key (held in memory only; never logged or stored).
        temperature: Sampling temperature.
        max_tokens: Answer cap.
        stop: Stop sequences.
        timeout_s: Per-request timeout.
        max_attempts: Attempts for retryable failures.
        limiter: Optional shared rate limiter.
        sleep: ``asyncio.sleep`` (injected in tests).
        rng: Jitter source.
        key_env: Name of the key's variable, for error messages.
    """

    def __init__(self, base_url: str, model: str, *, api: str = "chat", api_key: str | None = None,
                 temperature: float = 0.0, max_tokens: int = C.EVAL_MAX_TOKENS,
                 stop: tuple[str, ...] = ("\n",), timeout_s: float = C.REQUEST_TIMEOUT_S,
                 max_attempts: int = C.MAX_ATTEMPTS, limiter: Limiter | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 rng: random.Random | None = None, key_env: str = C.API_KEY_ENV) -> None:
        self.base_url = base_url
        self.shown_url = redact_url(base_url)  # for messages: no user:password@
        self.model = model
        self.api = api
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.stop = list(stop) or None
        self.max_attempts = max_attempts
        self.limiter = limiter
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.key_env = key_env
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "EMPTY",
                                          max_retries=0, timeout=timeout_s)
        self._succeeded = 0  # calls answered so far
        self._rejected = 0  # calls in a row that failed for a reason no retry fixes

    def _wait(self, state: RetryCallState) -> float:
        err = state.outcome.exception() if state.outcome else None
        ra = retry_after_seconds(err) if err else None
        if ra is not None:
            return min(ra, C.RETRY_AFTER_MAX_S) + self.rng.uniform(0, 0.1)
        cap = min(C.BACKOFF_MAX_S, C.BACKOFF_BASE_S * 2 ** (state.attempt_number - 1))
        return self.rng.uniform(0, cap)

    def _before_sleep(self, state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        log.info("retrying call to %s after %s (attempt %d/%d, waiting %.1f s)", self.model,
                 _describe(err), state.attempt_number, self.max_attempts,
                 state.next_action.sleep if state.next_action else 0.0)

    async def complete(self, prompt: str,
                       on_attempt: Callable[[int], None] | None = None) -> CallResult:
        """One answer for ``prompt``.

        Args:
            prompt: The prompt.
            on_attempt: Called with the attempt number (1, 2, ...) just before each request
                leaves (the journal's sent record: every request the server may count).

        Raises:
            EndpointError: 401/403/404/quota: fix the configuration.
            CallFailed: retryable failures did not clear, or a non-retryable 4xx.
        """
        attempts = throttled = 0
        estimate = estimate_tokens(prompt, self.max_tokens)

        async def attempt() -> CallResult:
            nonlocal attempts, throttled
            if self.limiter is not None:
                delay = await self.limiter.reserve(estimate)
                if delay > 0:
                    await self.sleep(delay)
            attempts += 1
            if on_attempt is not None:
                on_attempt(attempts)
            try:
                text, usage = await self._request(prompt)
            except Exception as err:
                if _status(err) == 429:
                    throttled += 1
                if self.limiter is not None:
                    if _status(err) == 429:
                        await self.limiter.on_throttled(retry_after_seconds(err))
                    await self.limiter.settle(estimate, 0 if _status(err) else estimate)
                raise
            pt = usage[0] if usage[0] is not None else estimate - self.max_tokens
            ct = usage[1] if usage[1] is not None else len(text) // 4 + 1
            if self.limiter is not None:
                # Providers count max_tokens against the TPM limit at admission (OpenAI: the
                # larger of max_tokens and the estimate), so the unused allowance is not
                # credited back.
                try:
                    await self.limiter.settle(estimate, pt + max(ct, self.max_tokens))
                    await self.limiter.on_success()
                except Exception as err:  # noqa: BLE001 - the answer is paid for: keep it
                    log.warning("rate limiter unreachable after a paid answer (%s); the "
                                "answer is kept", _describe(err))
            return CallResult(text, pt, ct, attempts, throttled)

        retrying = AsyncRetrying(stop=stop_after_attempt(self.max_attempts), wait=self._wait,
                                 retry=retry_if_exception(is_retryable), sleep=self.sleep,
                                 before_sleep=self._before_sleep, reraise=True)
        try:
            result = await retrying(attempt)
        except Exception as err:
            fatal = fatal_error(err, self.shown_url, self.model, self.key_env)
            if fatal is not None:
                raise fatal from None
            self._reject(err)
            raise CallFailed(f"call failed after {attempts} attempt(s): {_describe(err)}",
                             attempts=attempts, throttled=throttled) from err
        self._succeeded += 1
        self._rejected = 0
        return result

    def _reject(self, err: BaseException) -> None:
        """Count a call that failed for a reason no retry fixes (a 4xx such as 400 or 422,
        or a body that is no completion); before any call succeeded, ``REJECTED_CALLS_MAX``
        in a row mean the endpoint refuses what izray sends: stop before the budget burns."""
        status = _status(err)
        if not (isinstance(err, (MalformedResponse, openai.APIResponseValidationError))
                or (status is not None and 400 <= status < 500 and not is_retryable(err))):
            self._rejected = 0
            return
        self._rejected += 1
        if self._succeeded == 0 and self._rejected >= C.REJECTED_CALLS_MAX:
            raise EndpointError(
                f"the first {self._rejected} calls to {self.shown_url} all failed with "
                f"{_describe(err)}: the endpoint does not accept izray's requests; check "
                "evaluator.base_url (an OpenAI-compatible API, usually ending in /v1), "
                "evaluator.api (chat or completions) and the parameters it sends "
                "(evaluator.model, max_tokens, temperature, stop)") from None

    async def _request(self, prompt: str) -> tuple[str, tuple[int | None, int | None]]:
        if self.api == "chat":
            resp = await self._client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": prompt}],
                temperature=self.temperature, max_tokens=self.max_tokens, stop=self.stop)
            choices = getattr(resp, "choices", None)
            if not choices or getattr(choices[0], "message", None) is None:
                raise MalformedResponse("no choices in the response")
            text = choices[0].message.content
            if not isinstance(text, str):  # null, a list of parts, a number: no answer to keep
                raise MalformedResponse(f"message content is {type(text).__name__}, not text")
        else:
            resp = await self._client.completions.create(
                model=self.model, prompt=prompt, temperature=self.temperature,
                max_tokens=self.max_tokens, stop=self.stop)
            choices = getattr(resp, "choices", None)
            if not choices or not isinstance(getattr(choices[0], "text", None), str):
                raise MalformedResponse("no choices in the response")
            text = choices[0].text
        usage = getattr(resp, "usage", None)
        return text, (getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None))

    async def check(self) -> None:
        """Fail fast on a bad URL, key or model before a run, without a paid call.

        Lists the endpoint's models (``GET /models``, free). Endpoints without that route
        are accepted; their errors surface on the first real call.

        Raises:
            EndpointError: the endpoint is unreachable, rejects the key, or lacks the model.
        """
        try:
            page = await self._client.models.list()
        except Exception as err:  # noqa: BLE001 - classified below, nothing is swallowed
            if _status(err) == 404:
                return  # no /models route: nothing to check here
            fatal = fatal_error(err, self.shown_url, self.model, self.key_env)
            if fatal is not None:
                raise fatal from None
            if isinstance(err, openai.APIConnectionError):
                raise EndpointError(f"cannot reach {self.shown_url}: {_describe(err)}; check "
                                    "evaluator.base_url and that the server is up") from None
            if not isinstance(err, openai.APIStatusError):  # an answer the SDK cannot read
                raise EndpointError(self._not_an_api()) from None
            log.warning("endpoint check got %s; continuing", _describe(err))
            return
        if isinstance(page, str) or not isinstance(getattr(page, "data", None), list):
            raise EndpointError(self._not_an_api())
        names = [getattr(m, "id", None) for m in page.data]
        if names and self.model not in names:
            shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
            raise EndpointError(f"model {self.model!r} is not served at {self.shown_url} "
                                f"(it serves: {shown}); fix evaluator.model")

    def _not_an_api(self) -> str:
        return (f"{self.shown_url}/models answered with something that is not an "
                "OpenAI-compatible model list (a web page?); check evaluator.base_url (it "
                "usually ends in /v1)")

    async def close(self) -> None:
        await self._client.close()


def _describe(err: BaseException | None) -> str:
    if err is None:
        return "unknown error"
    status = _status(err)
    name = type(err).__name__
    if status is not None:
        return f"HTTP {status} ({name})"
    msg = str(err).splitlines()[0] if str(err) else ""
    return f"{name}: {msg}"[:200] if msg else name
