"""An OpenAI-compatible black-box simulator: a real HTTP server for tests and benchmarks.

It serves ``POST /v1/completions``, ``POST /v1/chat/completions``, ``GET /v1/models`` and
``GET /stats`` with:

* configurable latency (uniform in ``latency_ms``), requests/min and tokens/min limits over a
  sliding 60 s window, answered with 429 and ``Retry-After``;
* injected faults: 429s, 500s, hangs past the client's timeout, malformed 200 bodies;
* an optional API key (401 without it) and a fixed model list (404 for others);
* answers that depend on the instruction text, so BO has something to find: it "follows"
  an instruction by keywords (``plural``, ``first letter``, ``larger``, ``last``, ...) and
  applies that operation to the input; otherwise it echoes the input. A seeded fraction of
  answers is wrong regardless (``noise``). With ``landscape="hard"`` it answers the
  instructions of the ``sim-hard`` generator by :mod:`izray.testing.landscape` instead.

It counts every completion request it receives (``/stats`` -> ``{"requests": N, ...}``).

Run on its own::

    python -m izray.testing.simulator --port 8000 --rpm 600 --latency-ms 50-200 --fail-429 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web

from izray.tasks.builtin import PLURALS
from izray.testing import landscape


@dataclass
class SimConfig:
    """Simulator behaviour. Probabilities are per request, drawn from a seeded RNG."""

    models: tuple[str, ...] = ("sim-model",)
    api_key: str | None = None
    rpm: float | None = None
    tpm: float | None = None
    latency_ms: tuple[float, float] = (0.0, 0.0)
    fail_429: float = 0.0
    fail_500: float = 0.0
    fail_400: float = 0.0  # "Unsupported parameter" (what no retry fixes)
    timeout: float = 0.0
    malformed: float = 0.0
    hang_s: float = 30.0
    retry_after_s: float = 1.0
    retry_after: str | None = None  # verbatim Retry-After of injected 429s (e.g. "1e400")
    retry_after_mix: tuple[str, ...] = ()  # or one of these, drawn per injected 429
    malformed_kinds: tuple[str, ...] = ()  # kinds of `malformed` bodies (default: truncated)
    fail_first_429: int = 0  # the first N completion requests answer an injected 429
    bad_first: int = 0  # the first N (after those 429s) answer 200 with a bad body ...
    bad_kind: str = "list"  # ... of this kind: one of BAD_KINDS
    noise: float = 0.1
    seed: int = 0
    landscape: str = "classic"


BAD_KINDS = ("list", "int", "null", "no_choices", "html")
"""Bad 200 answers ``bad_first`` can inject: chat ``message.content`` as a list of parts, a
number or null; ``choices: []``; an HTML page instead of JSON."""

MALFORMED_KINDS = ("truncated", *BAD_KINDS)
"""Kinds ``malformed`` answers draw from (``malformed_kinds``): a cut-off JSON body or a
``BAD_KINDS`` answer."""

RETRY_AFTER_FORMS = ("1", "0.5", "2.5", "Wed, 21 Oct 2015 07:28:00 GMT", "soon", "", "-3",
                     "inf", "1e400", "86400")
"""Retry-After values a soak mixes: seconds, an HTTP date (past), garbage, empty, negative,
infinite and huge (clients must cap them)."""


@dataclass
class SimStats:
    """What the server saw."""

    requests: int = 0
    ok: int = 0
    rate_limited: int = 0
    injected_429: int = 0
    injected_500: int = 0
    injected_timeout: int = 0
    injected_malformed: int = 0
    unauthorized: int = 0
    not_found: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    max_inflight: int = 0
    first_t: float | None = None
    last_t: float | None = None
    window_max_requests: int = 0
    window_max_tokens: int = 0
    limit_tokens: int = 0  # tokens counted against the TPM limit (prompt + max_tokens)
    prompts: dict[str, int] = field(default_factory=dict)  # requests per prompt
    answered: dict[str, int] = field(default_factory=dict)  # good 200s (paid) per prompt

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("prompts", "answered")}
        d["distinct_prompts"] = len(self.prompts)
        #: Requests beyond the first per prompt (retries of faults included).
        d["repeated_prompts"] = sum(n - 1 for n in self.prompts.values())
        #: Good answers beyond the first per prompt: a paid call paid again.
        d["repeated_answers"] = sum(n - 1 for n in self.answered.values())
        return d


def count_tokens(text: str) -> int:
    """The simulator's tokenizer: ~4 characters per token."""
    return max(1, len(text) // 4)


_PLURAL = dict(PLURALS)
_COLOURS = {"banana": "yellow", "apple": "red", "grass": "green", "sky": "blue", "snow": "white"}


def _numbers(x: str) -> list[float]:
    return [float(t) for t in re.findall(r"-?\d+(?:\.\d+)?", x)]


def _fmt(v: float) -> str:
    return str(int(v)) if v == int(v) else str(v)


def _items(x: str) -> list[str]:
    return [t.strip() for t in x.split(",") if t.strip()]


#: (keywords, operation). The first operation whose keyword occurs and which applies wins.
OPERATIONS = (
    (("plural",), lambda x: _PLURAL.get(x.strip().lower())),
    (("first letter", "first character", "initial letter", "starting letter"),
     lambda x: x.strip()[:1].lower() or None),
    (("larger", "largest", "bigger", "biggest", "greater", "greatest", "maximum", "higher"),
     lambda x: _fmt(max(_numbers(x))) if len(_numbers(x)) >= 2 else None),
    (("smaller", "smallest", "minimum", "lower"),
     lambda x: _fmt(min(_numbers(x))) if len(_numbers(x)) >= 2 else None),
    (("last",), lambda x: _items(x)[-1] if len(_items(x)) >= 2 else None),
    (("first item", "first element", "first entry"),
     lambda x: _items(x)[0] if len(_items(x)) >= 2 else None),
    (("reverse", "backwards"), lambda x: x.strip()[::-1] or None),
    (("capital", "uppercase", "upper case"), lambda x: x.upper()),
    (("add one", "plus one", "increment"),
     lambda x: _fmt(_numbers(x)[0] + 1) if _numbers(x) else None),
    (("colour", "color"), lambda x: _COLOURS.get(x.strip().lower())),
)


def follow(instruction: str, input_text: str) -> str:
    """What the simulated model answers for ``instruction`` on ``input_text``."""
    low = instruction.lower()
    for keywords, op in OPERATIONS:
        if any(k in low for k in keywords):
            try:
                out = op(input_text)
            except (ValueError, IndexError):
                out = None
            if out is not None:
                return out
    return input_text.strip()


def apply(op: str, input_text: str) -> str | None:
    """Operation ``op`` (one of its keywords) applied to ``input_text``."""
    for keywords, fn in OPERATIONS:
        if op in keywords:
            try:
                return fn(input_text)
            except (ValueError, IndexError):
                return None
    return None


def follow_hard(instruction: str, input_text: str) -> str:
    """The ``hard`` landscape's answer: right iff the landscape says so, else the input."""
    parsed = landscape.parse(instruction)
    if parsed is None:
        return follow(instruction, input_text)
    op, idx = parsed
    if idx[0] < 4 and landscape.margin(op, idx, input_text) > 0:
        out = apply(op, input_text)
        if out is not None:
            return out
    return input_text.strip()


def parse_prompt(prompt: str) -> tuple[str, str]:
    """The last ``Instruction:`` and ``Input:`` of a prompt (a primer may precede them)."""
    instr = re.findall(r"Instruction:\s*(.*?)\s*(?:\n|$)", prompt)
    inputs = re.findall(r"Input:\s*(.*?)\s*(?:\nOutput:|$)", prompt, flags=re.DOTALL)
    return (instr[-1] if instr else ""), (inputs[-1] if inputs else prompt.strip())


class Simulator:
    """The aiohttp application and its state. Use :func:`start_in_thread` or :func:`main`."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.stats = SimStats()
        self.rng = random.Random(cfg.seed)
        self._window: deque[tuple[float, int]] = deque()
        self._inflight = 0
        self._served = 0  # completion requests past the auth, JSON and model checks

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/stats", self.get_stats)
        app.router.add_post("/reset", self.reset)
        return app

    # ------------------------------------------------------------ handlers

    async def models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "invalid api key", "invalid_api_key")
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "sim"} for m in self.cfg.models]})

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.as_dict())

    async def reset(self, request: web.Request) -> web.Response:
        self.stats = SimStats()
        self._window.clear()
        return web.json_response({"ok": True})

    async def completions(self, request: web.Request) -> web.Response:
        return await self._handle(request, chat=False)

    async def chat(self, request: web.Request) -> web.Response:
        return await self._handle(request, chat=True)

    # ------------------------------------------------------------ core

    def _authorized(self, request: web.Request) -> bool:
        if self.cfg.api_key is None:
            return True
        return request.headers.get("Authorization", "") == f"Bearer {self.cfg.api_key}"

    def _admit(self, now: float, tokens: int) -> float | None:
        """Sliding-window limits: None if admitted, else seconds until it would be."""
        while self._window and self._window[0][0] <= now - 60.0:
            self._window.popleft()
        n = len(self._window)
        tok = sum(t for _, t in self._window)
        over_r = self.cfg.rpm is not None and n + 1 > self.cfg.rpm
        over_t = self.cfg.tpm is not None and tok + tokens > self.cfg.tpm
        if over_r or over_t:
            oldest = self._window[0][0] if self._window else now
            return max(0.05, oldest + 60.0 - now)
        self._window.append((now, tokens))
        self.stats.limit_tokens += tokens
        self.stats.window_max_requests = max(self.stats.window_max_requests, n + 1)
        self.stats.window_max_tokens = max(self.stats.window_max_tokens, tok + tokens)
        return None

    async def _handle(self, request: web.Request, chat: bool) -> web.Response:
        now = time.monotonic()
        st = self.stats
        st.requests += 1
        st.first_t = st.first_t if st.first_t is not None else time.time()
        st.last_t = time.time()
        if not self._authorized(request):
            st.unauthorized += 1
            return _error(401, "Incorrect API key provided", "invalid_api_key")
        try:
            body = await request.json()
        except (json.JSONDecodeError, ValueError):
            return _error(400, "body is not JSON", "invalid_request_error")
        model = body.get("model")
        if model not in self.cfg.models:
            st.not_found += 1
            return _error(404, f"The model `{model}` does not exist", "model_not_found")
        if chat:
            msgs = body.get("messages") or []
            prompt = "\n".join(str(m.get("content", "")) for m in msgs)
        else:
            prompt = body.get("prompt", "")
            if isinstance(prompt, list):
                prompt = prompt[0] if prompt else ""
        st.prompts[prompt] = st.prompts.get(prompt, 0) + 1
        max_tokens = int(body.get("max_tokens") or 16)
        p_tokens = count_tokens(prompt)
        wait = self._admit(now, p_tokens + max_tokens)
        if wait is not None:
            st.rate_limited += 1
            return _error(429, "Rate limit reached", "rate_limit_exceeded",
                          headers={"Retry-After": f"{wait:.3f}"})
        u = self.rng.random()
        c = self.cfg
        lo, hi = c.latency_ms
        latency = (lo + (hi - lo) * self.rng.random()) / 1000.0
        self._inflight += 1
        st.max_inflight = max(st.max_inflight, self._inflight)
        self._served += 1
        try:
            if u < c.fail_429 or self._served <= c.fail_first_429:
                st.injected_429 += 1
                header = c.retry_after if c.retry_after is not None else f"{c.retry_after_s:g}"
                if c.retry_after_mix:
                    header = c.retry_after_mix[self.rng.randrange(len(c.retry_after_mix))]
                return _error(429, "Rate limit reached (injected)", "rate_limit_exceeded",
                              headers={"Retry-After": header})
            if c.fail_400 and self.rng.random() < c.fail_400:
                return _error(400, "Unsupported parameter: 'stop' is not supported with this "
                              "model.", "invalid_request_error")
            if self._served <= c.fail_first_429 + c.bad_first:
                st.injected_malformed += 1
                return _bad(c.bad_kind, model, chat)
            u -= c.fail_429
            if u < c.fail_500:
                st.injected_500 += 1
                return _error(500, "internal error (injected)", "server_error")
            u -= c.fail_500
            if u < c.timeout:
                st.injected_timeout += 1
                await asyncio.sleep(c.hang_s)
                return _error(504, "gateway timeout (injected)", "timeout")
            u -= c.timeout
            if latency:
                await asyncio.sleep(latency)
            if u < c.malformed:
                st.injected_malformed += 1
                kinds = c.malformed_kinds or ("truncated",)
                kind = kinds[self.rng.randrange(len(kinds))]
                if kind != "truncated":
                    return _bad(kind, model, chat)
                return web.Response(status=200, text='{"id": "x", "choices": [', content_type="application/json")
            instruction, input_text = parse_prompt(prompt)
            if c.landscape == "hard":
                answer = follow_hard(instruction, input_text)
            else:
                answer = follow(instruction, input_text)
                digest = hashlib.sha256(f"{c.seed}|{instruction}|{input_text}".encode()).digest()
                if digest[0] / 256.0 < c.noise:
                    answer = input_text.strip()
            text = " " + answer
            c_tokens = min(max_tokens, count_tokens(text))
            st.ok += 1
            st.answered[prompt] = st.answered.get(prompt, 0) + 1
            st.prompt_tokens += p_tokens
            st.completion_tokens += c_tokens
            usage = {"prompt_tokens": p_tokens, "completion_tokens": c_tokens,
                     "total_tokens": p_tokens + c_tokens}
            if chat:
                choice = {"index": 0, "message": {"role": "assistant", "content": answer},
                          "finish_reason": "stop"}
                obj = "chat.completion"
            else:
                choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
                obj = "text_completion"
            return web.json_response({"id": f"sim-{st.requests}", "object": obj, "created": 0,
                                      "model": model, "choices": [choice], "usage": usage})
        finally:
            self._inflight -= 1


def _bad(kind: str, model: str, chat: bool) -> web.Response:
    """A 200 whose body is no usable answer (``BAD_KINDS``)."""
    if kind == "html":
        return web.Response(status=200, text="<html><body>Welcome to nginx!</body></html>",
                            content_type="text/html")
    content = {"list": [{"type": "text", "text": "cats"}], "int": 7, "null": None}.get(kind)
    if kind == "no_choices":
        choices = []
    elif chat:
        choices = [{"index": 0, "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop"}]
    else:
        choices = [{"index": 0, "text": content, "finish_reason": "stop", "logprobs": None}]
    return web.json_response({"id": "bad", "object": "chat.completion" if chat else
                              "text_completion", "created": 0, "model": model,
                              "choices": choices})


def _error(status: int, message: str, code: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": code, "code": code}},
                             status=status, headers=headers)


class RunningSimulator:
    """A simulator serving on a background thread; ``base_url`` is ``http://127.0.0.1:P/v1``."""

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._host, self._port = host, port
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("simulator did not start")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self.sim.app(), access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self._host, self._port)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}/v1"

    @property
    def stats(self) -> SimStats:
        return self.sim.stats

    def stop(self) -> None:
        async def _shutdown() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(_shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def start_in_thread(cfg: SimConfig | None = None, port: int = 0) -> RunningSimulator:
    """Start a simulator on 127.0.0.1 in this process (tests)."""
    return RunningSimulator(Simulator(cfg or SimConfig()), port=port)


def _range(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition("-")
    return float(lo), float(hi or lo)


def parse_args(argv: list[str] | None = None) -> tuple[SimConfig, str, int]:
    p = argparse.ArgumentParser(description="OpenAI-compatible black-box simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rpm", type=float)
    p.add_argument("--tpm", type=float)
    p.add_argument("--latency-ms", type=_range, default=(0.0, 0.0), metavar="A-B")
    p.add_argument("--fail-429", type=float, default=0.0)
    p.add_argument("--fail-500", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=0.0, help="fraction of requests that hang")
    p.add_argument("--hang-s", type=float, default=30.0, help="how long a hanging request hangs")
    p.add_argument("--malformed", type=float, default=0.0)
    p.add_argument("--retry-after-s", type=float, default=1.0)
    p.add_argument("--noise", type=float, default=0.1)
    p.add_argument("--model", action="append", dest="models")
    p.add_argument("--api-key", help="require this bearer key (401 otherwise)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--landscape", choices=("classic", "hard"), default="classic",
                   help="hard: answer the sim-hard generator's instructions (quality benchmark)")
    a = p.parse_args(argv)
    cfg = SimConfig(models=tuple(a.models or ["sim-model"]), api_key=a.api_key, rpm=a.rpm,
                    tpm=a.tpm, latency_ms=a.latency_ms, fail_429=a.fail_429, fail_500=a.fail_500,
                    timeout=a.timeout, malformed=a.malformed, hang_s=a.hang_s,
                    retry_after_s=a.retry_after_s, noise=a.noise, seed=a.seed,
                    landscape=a.landscape)
    return cfg, a.host, a.port


def main(argv: list[str] | None = None) -> None:
    cfg, host, port = parse_args(argv)
    print(f"simulator on http://{host}:{port}/v1 (stats: /stats)", flush=True)
    web.run_app(Simulator(cfg).app(), host=host, port=port, access_log=None, print=None)


if __name__ == "__main__":  # pragma: no cover
    main()
