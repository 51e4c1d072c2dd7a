"""Thin Ray actors around the plain classes that do the work.

* :class:`GeneratorActor` holds one generation engine (vLLM or transformers).
* :class:`EvaluatorActor` is an async actor making bounded-concurrency black-box calls. It
  reads the API key from *its own* environment or key file, so the key never travels
  through Ray (task arguments, object store, job metadata).
* :class:`RateLimiterActor` is the one limiter all evaluators of an endpoint share.
* :class:`ServerActor` owns the embedded model server process.
* :func:`compute_task` runs a searcher's remote work (a BO proposal) on a cluster CPU.

Generator and evaluator actors restart when they die (``max_restarts``) and Ray retries the
interrupted call on the new instance (``max_task_retries``), so no candidate is lost.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import ray

from izray.testing.crash import forwarded_env

#: Restarts of a dead actor before Ray gives up on it.
ACTOR_MAX_RESTARTS = 3
#: Retries of a call interrupted by its actor's death.
ACTOR_MAX_TASK_RETRIES = 3
#: Environment every izray actor gets: quiet engines.
#: (Plus the crash-test variables, when the driver has them: :mod:`izray.testing.crash`.)
ACTOR_ENV = {"VLLM_LOGGING_LEVEL": "ERROR", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1",
             "PYTHONWARNINGS": "ignore", "TRANSFORMERS_VERBOSITY": "error", **forwarded_env()}
#: Chatty third-party loggers kept at WARNING inside actors.
QUIET_LOGGERS = ("httpx", "httpx2", "openai", "vllm", "transformers")


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def redirect_output(log_path: str | None) -> bool:
    """Send this process's stdout and stderr to ``log_path``, keeping izray's own log lines.

    File descriptors 1 and 2 are redirected, so what engines write below Python (C++ and
    Triton warnings, NUMA notices), checkpoint-loading progress bars and the engine's own
    subprocesses all land in the file. Records of the ``izray`` logger still go to the
    original stderr, which Ray forwards to the driver's terminal. A path that cannot be
    opened on this node (another machine of the cluster) leaves the output as it was.

    Args:
        log_path: File to append to (``None``: leave the output alone).

    Returns:
        Whether the output now goes to the file.
    """
    if not log_path:
        return False
    try:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        return False
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    kept = os.fdopen(os.dup(2), "w", buffering=1)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    own = logging.getLogger("izray")
    handler = logging.StreamHandler(kept)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    own.addHandler(handler)
    own.propagate = False
    print(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} actor pid {os.getpid()} on "
          f"{os.uname().nodename} ===", flush=True)
    return True


@ray.remote
class GeneratorActor:
    """One generator engine. ``kwargs`` go to :func:`izray.generation.build_generator`; the
    engine's own output goes to ``log_path`` (:func:`redirect_output`)."""

    def __init__(self, backend: str, model: str, kwargs: dict[str, Any],
                 log_path: str | None = None) -> None:
        _setup_logging()
        self.log_path = log_path if redirect_output(log_path) else None
        from izray.generation import build_generator
        from izray.models import resolve_model

        path = model if backend == "sim" else resolve_model(model)
        self.gen = build_generator(backend, path, **kwargs)
        self.calls = 0
        self.prompts = 0
        self.busy_s = 0.0

    def info(self):
        return self.gen.info

    def generate(self, requests):
        t0 = time.monotonic()
        try:
            return self.gen.generate(requests)
        finally:
            self.calls += 1
            self.prompts += len(requests)
            self.busy_s += time.monotonic() - t0

    def stats(self) -> dict:
        return {"calls": self.calls, "prompts": self.prompts, "busy_s": self.busy_s,
                "pid": os.getpid(), "log_path": self.log_path}

    def pid(self) -> int:
        return os.getpid()


@ray.remote
class RateLimiterActor:
    """The shared :class:`~izray.evaluation.RateLimiter` of one endpoint and model."""

    def __init__(self, rpm: float | None, tpm: float | None, margin: float = 0.0) -> None:
        from izray.evaluation.ratelimit import RateLimiter

        self.lim = RateLimiter(rpm, tpm, margin=margin)

    def configure(self, rpm: float | None, tpm: float | None, margin: float = 0.0) -> None:
        """Adopt the limits of a (re)starting run; the pacing state is kept."""
        self.lim.margin = margin
        self.lim.rpm = rpm * (1.0 - margin) if rpm else rpm
        self.lim.tpm = tpm * (1.0 - margin) if tpm else tpm

    def reserve(self, tokens: int) -> float:
        return self.lim.reserve(tokens)

    def settle(self, estimated: int, actual: int) -> None:
        self.lim.settle(estimated, actual)

    def on_throttled(self, retry_after: float | None) -> None:
        self.lim.on_throttled(retry_after)

    def on_success(self) -> None:
        self.lim.on_success()

    def stats(self) -> dict:
        s = self.lim.stats
        rpm, tpm = self.lim.allowed()
        return {"reserved": s.reserved, "throttled": s.throttled, "factor": s.factor,
                "allowed_rpm": rpm, "allowed_tpm": tpm,
                "calls_last_minute": self.lim.calls_last_minute()}

    def get_state(self) -> dict:
        return self.lim.get_state()


class _RemoteLimiter:
    """Adapts a :class:`RateLimiterActor` handle to the client's async ``Limiter`` protocol."""

    def __init__(self, handle) -> None:
        self.h = handle

    async def reserve(self, tokens: int) -> float:
        return await self.h.reserve.remote(tokens)

    async def settle(self, estimated: int, actual: int) -> None:
        await self.h.settle.remote(estimated, actual)

    async def on_throttled(self, retry_after: float | None) -> None:
        await self.h.on_throttled.remote(retry_after)

    async def on_success(self) -> None:
        await self.h.on_success.remote()


def read_api_key(env_name: str, key_file: str | None) -> str | None:
    """The API key from ``key_file`` (if set) or the environment variable ``env_name``.

    Raises:
        ConfigError: ``key_file`` is set but missing, a directory, unreadable or empty (a run
            would otherwise go without a key, silently).
    """
    if key_file:
        from izray.errors import ConfigError

        path = Path(key_file).expanduser()
        node = ray.util.get_node_ip_address() if ray.is_initialized() else "this node"
        where = f"evaluator.api_key_file {path} (on {node})"
        if path.is_dir():
            raise ConfigError(f"{where} is a directory; point it at the file holding the key")
        try:
            key = path.read_text().strip()
        except OSError as err:
            raise ConfigError(f"{where} cannot be read: {err.strerror or err}") from None
        if not key:
            raise ConfigError(f"{where} is empty; write the API key into it")
        return key
    return os.environ.get(env_name) or None


@ray.remote
class EvaluatorActor:
    """Black-box calls with bounded concurrency (an async actor).

    Args:
        client_kwargs: :class:`~izray.evaluation.BlackBoxClient` arguments, without the key.
        concurrency: Requests in flight.
        key_env: Variable holding the key (read here, on this node).
        key_file: Or a file holding it.
        limiter: Optional :class:`RateLimiterActor` handle.
        call_settings: Cache-key settings (for the journal and pay-once).
        journal_dir: The run's journal directory; each incarnation of this actor appends to
            its own file there, and reloads every journal's answers on (re)start, so a call
            finished before a crash is never paid again. ``None`` or unreachable: no journal.
        server_key: The embedded model server's per-run key (instead of ``key_env``/``key_file``).
    """

    def __init__(self, client_kwargs: dict[str, Any], concurrency: int, key_env: str,
                 key_file: str | None, limiter=None, call_settings: dict | None = None,
                 journal_dir: str | None = None, server_key: str | None = None) -> None:
        _setup_logging()
        from izray.evaluation import BlackBoxClient, Evaluator
        from izray.evaluation.ledger import Journal, read_journals

        # No key is fine for servers without auth; one that needs a key answers 401, which
        # fails the run at its first check with a message naming the key variable.
        self.key_problem: Exception | None = None
        key = server_key
        if key is None:
            try:
                key = read_api_key(key_env, key_file)
            except Exception as err:  # noqa: BLE001 - reported by check(), in one line
                self.key_problem = err
        self.client = BlackBoxClient(api_key=key, key_env=key_env,
                                     limiter=_RemoteLimiter(limiter) if limiter else None,
                                     **client_kwargs)
        from izray.errors import IzrayError
        from izray.report import JOURNAL_MARK

        journal, known = None, {}
        self.journal_problem: str | None = None
        if journal_dir is not None and call_settings is not None:
            where = f"node {ray.util.get_node_ip_address()}"
            if not (Path(journal_dir) / JOURNAL_MARK).is_file():
                self.journal_problem = (
                    f"the evaluator on {where} does not see the run directory's journal at "
                    f"{journal_dir}: its paid calls would be journaled where no resume reads "
                    "them; put --out on a volume every node mounts (or run the evaluators on "
                    "the head node)")
            else:
                try:
                    known = {r.key: r.text for r in read_journals(journal_dir) if r.ok}
                    journal = Journal(Path(journal_dir) / f"eval-{uuid.uuid4().hex[:12]}.jsonl")
                except OSError as err:
                    self.journal_problem = (f"the evaluator on {where} cannot write the journal "
                                            f"at {journal_dir} ({err.strerror or err}); "
                                            "check the run directory's permissions and space")
                except IzrayError as err:  # a damaged journal line: the driver says the same
                    self.journal_problem = str(err)
        self.evaluator = Evaluator(self.client, concurrency, call_settings, journal, known)

    async def check(self) -> None:
        """Fail fast: no durable journal here, or a bad endpoint, key or model."""
        if self.key_problem is not None:
            raise self.key_problem
        if self.journal_problem is not None:
            from izray.errors import RunStateError

            raise RunStateError(self.journal_problem)
        await self.client.check()

    async def evaluate(self, prompts: list[str], tag: str = ""):
        return await self.evaluator.evaluate(prompts, tag)

    def pid(self) -> int:
        return os.getpid()


@ray.remote
class ServerActor:
    """Owns the embedded :class:`~izray.runtime.server.LocalModelServer` process.

    The server answers only requests with a key made for this start (:meth:`api_key`, handed
    to the evaluator actors). It binds loopback when the run's Ray is local (one node);
    on a cluster it binds the node's address, so evaluators on other nodes reach it, and the
    key keeps everyone else out.

    Args:
        loopback: Bind 127.0.0.1 (the evaluators are on this node).
        prompt_embeds: Start it with ``--enable-prompt-embeds``, so that it also serves as
            the generator (``generator.backend: served``): one engine instead of two.
    """

    def __init__(self, model: str, served_name: str, max_model_len: int, kv_cache_gb: int,
                 log_path: str | None, loopback: bool = True,
                 prompt_embeds: bool = False) -> None:
        _setup_logging()
        import secrets

        from izray.models import resolve_model
        from izray.runtime.server import LocalModelServer

        host = "127.0.0.1" if loopback else ray.util.get_node_ip_address()
        self._key = secrets.token_urlsafe(24)
        self.server = LocalModelServer(resolve_model(model), served_name, host=host,
                                       max_model_len=max_model_len, kv_cache_gb=kv_cache_gb,
                                       log_path=log_path, api_key=self._key,
                                       extra_args=["--enable-prompt-embeds"] if prompt_embeds
                                       else None)

    def wait_ready(self, timeout_s: float) -> str:
        self.server.wait_ready(timeout_s)
        return self.server.base_url

    def api_key(self) -> str:
        """The key the server requires (never logged or stored; held by actors only)."""
        return self._key

    def stop(self) -> None:
        self.server.stop()

    def __del__(self) -> None:  # pragma: no cover - best effort at actor exit
        # No module globals here: at interpreter exit they may already be None.
        try:
            self.server.stop()
        except Exception:  # noqa: BLE001, S110 - nothing to report to at exit
            pass


@ray.remote
def compute_task(compute, request):
    """Run a searcher's remote work (a BO proposal: GP fit + qLogEI) on a cluster CPU."""
    import torch

    threads = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    torch.set_num_threads(threads)
    return compute(request)
