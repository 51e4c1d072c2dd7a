"""Bring up Ray and the actor pools for one run, and take them down again."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from izray import _constants as C
from izray.config import RunConfig, config_to_dict
from izray.errors import ConfigError, IzrayError
from izray.evaluation import endpoint_settings, resolve_api
from izray.generation import ModelInfo
from izray.models import BUILTIN_MODELS, resolve_model
from izray.runtime.actors import ACTOR_ENV, RateLimiterActor, ServerActor, read_api_key
from izray.runtime.pools import EvaluatorPool, GeneratorPool

log = logging.getLogger("izray")

#: Logical CPUs of a local Ray cluster at least: actors and proposal tasks reserve fractions
#: of CPUs, and a 2-core machine with num_cpus=2 leaves nothing for proposal tasks.
LOCAL_MIN_CPUS = 4


@dataclass
class Session:
    """The running pools of one run."""

    generators: GeneratorPool
    evaluators: EvaluatorPool
    info: ModelInfo
    call_settings: dict[str, Any]
    owns_ray: bool
    extra_actors: list = field(default_factory=list)

    def shutdown(self) -> None:
        for actor in self.extra_actors:
            if hasattr(actor, "stop"):
                try:
                    ray.get(actor.stop.remote(), timeout=60)
                except Exception as err:  # noqa: BLE001 - best effort on the way out
                    log.debug("stopping %s: %s", actor, err)
            ray.kill(actor)
        self.generators.shutdown()
        self.evaluators.shutdown()


def retire_evaluators(run_prefix: str, keep: str) -> int:
    """Kill this run's detached evaluator actors made with other settings (names starting
    with ``run_prefix`` but not ``keep``); returns how many. Calls they still had in flight
    are counted as lost at the end of the run (:func:`izray.evaluation.ledger.lost_calls`)."""
    old = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
           if a.get("namespace") == "izray" and a["name"].startswith(run_prefix)
           and not a["name"].startswith(keep + "-")]
    for name in old:
        try:
            ray.kill(ray.get_actor(name, namespace="izray"))
        except ValueError:  # gone meanwhile
            continue
    if old:
        log.info("evaluator settings changed since the last start: retired %d old evaluator "
                 "actor(s)", len(old))
    return len(old)

#: Seconds to wait for a TCP connection to the cluster's address before calling it unreachable.
RAY_CONNECT_TIMEOUT_S = 10.0


def check_ray_address(address: str, source: str) -> None:
    """Fail in one line, in seconds, on an address no Ray cluster can be at.

    ``ray.init`` raises a ``ValueError`` traceback for ``garbage:xx`` and waits minutes for
    an unreachable GCS; this checks the form (``host:port``, ``ray://host:port``; ``auto``
    and ``local`` are Ray's own) and that the port accepts a connection.

    Raises:
        ConfigError: naming ``source`` (``ray.address`` or ``$RAY_ADDRESS``) and the address.
    """
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[1] if "://" in address else address
    hostport = hostport.split("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{source}={address!r} is not a Ray address: give HOST:PORT of the "
                          "head's GCS (e.g. 10.0.0.5:6379), ray://HOST:PORT, or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), RAY_CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ConfigError(f"cannot reach a Ray cluster at {address} ({source}): "
                          f"{err.strerror or err}; start the head there or fix the address"
                          ) from None


#: Ray's logger that announces token authentication when a local cluster starts.
RAY_AUTH_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"


def init_ray(cfg: RunConfig) -> bool:
    """Connect to the configured cluster or start a local one. Returns True if started here."""
    if ray.is_initialized():
        return False
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        source = "ray.address" if cfg.ray.address else "$RAY_ADDRESS"
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"cannot connect to the Ray cluster at {address} ({source}): "
                              f"{first[:200]}") from None
        return False
    num_cpus = cfg.ray.num_cpus or max(LOCAL_MIN_CPUS, os.cpu_count() or 1)
    # A private cluster of this process: Ray's notice that it enabled token auth by default
    # tells the operator nothing to do (the cluster is gone when the run ends).
    logging.getLogger(RAY_AUTH_NOTICE_LOGGER).setLevel(logging.ERROR)
    ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    return True


def _check_model_name(name: str) -> None:
    if name not in BUILTIN_MODELS:
        resolve_model(name)  # raises a one-line error for a missing path


def preflight(cfg: RunConfig) -> None:
    """Checks that need no cluster: model paths. Run before anything is created or logged."""
    if cfg.generator.backend != "sim":
        _check_model_name(cfg.generator.model)
    if cfg.evaluator.embedded:
        _check_model_name(cfg.server.model)
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        check_ray_address(address, "ray.address" if cfg.ray.address else "$RAY_ADDRESS")


def _check_local_cpus(cfg: RunConfig) -> None:
    """A local cluster must leave room for one proposal task, or BO would wait forever."""
    resources = ray.cluster_resources()
    total = resources.get("CPU", 0.0)
    g = cfg.generator
    n = _int_actors(cfg)
    if g.num_cpus * n > total:
        raise ConfigError(f"generator.num_actors={n} x generator.num_cpus={g.num_cpus:g} needs "
                          f"{g.num_cpus * n:g} logical CPUs, the local cluster has {total:g}: "
                          "lower generator.num_actors or generator.num_cpus, or raise "
                          "ray.num_cpus")
    gpus = g.num_gpus * g.tensor_parallel_size * n
    if isinstance(g.num_actors, int) and gpus > resources.get("GPU", 0.0):
        raise ConfigError(f"generator.num_actors={n} needs {gpus:g} GPUs (num_gpus x "
                          f"tensor_parallel_size each), this machine has "
                          f"{resources.get('GPU', 0.0):g}: lower generator.num_actors or "
                          "generator.num_gpus, or run on a cluster (ray.address)")
    reserved = (cfg.generator.num_cpus * _int_actors(cfg) + 0.1 * cfg.evaluator.num_actors
                + (cfg.server.num_cpus if cfg.evaluator.embedded else 0.0))
    if total - reserved < cfg.bo.num_cpus:
        raise ConfigError(f"bo.num_cpus={cfg.bo.num_cpus:g} does not fit: the local cluster has "
                          f"{total:g} logical CPUs and the actors reserve {reserved:g}; raise "
                          "ray.num_cpus or lower bo.num_cpus / generator.num_cpus")


def _int_actors(cfg: RunConfig) -> int:
    return cfg.generator.num_actors if isinstance(cfg.generator.num_actors, int) else 1


def unwrap_actor_error(err: Exception) -> Exception:
    """The izray error inside a Ray task/actor error, if there is one."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, IzrayError):
        return cause
    text = str(err)
    for line in text.splitlines():
        for cls in IzrayError.__subclasses__():
            prefix = f"izray.errors.{cls.__name__}: "
            if line.strip().startswith(prefix):
                return cls(line.strip()[len(prefix):])
    return err


def shared_limiter(cfg: RunConfig, model: str):
    """The one rate limiter of this endpoint and model on the cluster.

    A named, detached actor: every evaluator actor of every run on the cluster that calls
    the same endpoint and model shares it, and it outlives a driver restart, so a resumed
    or re-submitted job continues the pacing instead of starting with a fresh budget.
    """
    endpoint = config_to_dict(cfg)["evaluator"]["base_url"] or "embedded"
    ev = cfg.evaluator
    if ev.embedded:  # a private server per run: nothing to share
        return RateLimiterActor.options(num_cpus=0).remote(ev.rpm, ev.tpm, ev.rate_margin)
    digest = hashlib.sha256(f"{endpoint}|{model}".encode()).hexdigest()[:16]
    # On the driver's node (the head in a job), which the autoscaler never removes.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    handle = RateLimiterActor.options(name=f"izray-limiter-{digest}", namespace="izray",
                                      lifetime="detached", get_if_exists=True, num_cpus=0,
                                      max_restarts=-1, scheduling_strategy=here).remote(
        ev.rpm, ev.tpm, ev.rate_margin)
    ray.get(handle.configure.remote(ev.rpm, ev.tpm, ev.rate_margin))
    return handle


def shares_embedded_server(cfg: RunConfig) -> bool:
    """Whether the generator is the embedded black-box server (``served``, no base_url)."""
    return (cfg.generator.backend == "served" and cfg.generator.base_url is None
            and cfg.evaluator.embedded)


def _await(refs: list, t0: float) -> list:
    """``ray.get`` of ``refs`` as they start: a status line every 30 s, and the first one
    that fails raises at once, not after the slowest is up."""
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=len(pending), timeout=30)
        for ref in ready:
            ray.get(ref)  # surface errors now
        if pending:
            log.info("still starting (%.0f s)...", time.monotonic() - t0)
    return ray.get(list(refs))


def start_pools(cfg: RunConfig, run_path: Path,
                on_connected: Callable[[], None] | None = None) -> Session:
    """Start Ray, the embedded server if needed, the generator and evaluator pools.

    ``on_connected`` is called once Ray is connected (before any actor starts): the app
    installs its signal handlers again there, over the one ``ray.init`` sets.

    Raises:
        IzrayError: a model cannot be loaded, the endpoint is unreachable or rejects the key.
    """
    preflight(cfg)
    ev = cfg.evaluator
    try:
        key_here = read_api_key(ev.api_key_env, ev.api_key_file)
    except ConfigError:
        key_here = "?"  # a bad key file here; the evaluators check theirs on their own nodes
    if not ev.embedded and key_here is None:
        where = f"file {ev.api_key_file}" if ev.api_key_file else f"${ev.api_key_env}"
        log.warning("no API key in %s here; calls go without one (fine for servers without "
                    "auth; on a cluster the evaluator actors read it on their own nodes)", where)
    owns = init_ray(cfg)
    if on_connected is not None:
        on_connected()
    extra = []
    pools: list = []
    t0 = time.monotonic()
    try:
        if owns:  # before any actor starts: a misfit fails in seconds, not after engine loads
            _check_local_cpus(cfg)
        server = server_ref = None
        shared = shares_embedded_server(cfg)
        if cfg.evaluator.embedded:
            server = ServerActor.options(num_cpus=cfg.server.num_cpus,
                                         runtime_env={"env_vars": ACTOR_ENV}).remote(
                cfg.server.model, C.EMBEDDED_MODEL_NAME, cfg.server.max_model_len,
                cfg.server.kv_cache_gb, str(run_path / "logs" / "server.log"), owns, shared)
            extra.append(server)
            server_ref = server.wait_ready.remote(cfg.server.startup_timeout_s)
        served = None
        if shared:  # the generator talks to the embedded server: it must be up first
            log.info("starting the embedded model server (generator and black box: one "
                     "engine); the first start converts the model, a few minutes on a CPU")
            served = {"base_url": _await([server_ref], t0)[0],
                      "served_model": C.EMBEDDED_MODEL_NAME,
                      "server_key": ray.get(server.api_key.remote())}
        gen_log = run_path / "logs" / "generator.log"
        generators = GeneratorPool(cfg.generator, cfg.seed, str(gen_log), served)
        pools.append(generators)
        log.info("starting %s %s generator actor(s) on %s%s; the first start converts the model "
                 "and loads the engines, which takes a few minutes on a CPU (engine output: %s)",
                 cfg.generator.num_actors, cfg.generator.backend, cfg.generator.model,
                 " and the embedded model server" if server_ref else "",
                 gen_log.parent if server_ref else gen_log)
        info_refs = generators.info_refs()
        _await(list(info_refs) + ([server_ref] if server_ref else []), t0)
        info = GeneratorPool.check_infos(ray.get(info_refs))
        base_url = ray.get(server_ref) if server_ref else cfg.evaluator.base_url
        server_key = ray.get(server.api_key.remote()) if server_ref else None
        model = C.EMBEDDED_MODEL_NAME if cfg.evaluator.embedded else cfg.evaluator.model
        client_kwargs = {"base_url": base_url, "model": model, "api": resolve_api(ev),
                         "temperature": ev.temperature, "max_tokens": ev.max_tokens,
                         "stop": ev.stop, "timeout_s": ev.timeout_s,
                         "max_attempts": ev.max_attempts}
        limiter = None
        if ev.rpm or ev.tpm:
            limiter = shared_limiter(cfg, model)
            if ev.embedded:
                extra.append(limiter)
        call_settings = endpoint_settings(cfg)
        endpoint = call_settings["endpoint"]
        # On a cluster the evaluators are detached and named after the run directory: they
        # outlive a crashed driver, finish and journal its in-flight calls, and a resumed
        # driver reconnects to them.
        prefix = None
        if not owns:
            run_id = hashlib.sha256(str(run_path.resolve()).encode()).hexdigest()[:12]
            # The name also carries the actors' settings: a resume with another base_url
            # (the embedded server's port changes every start), timeout or concurrency gets
            # new actors, and the old ones are retired instead of calling the old endpoint.
            blob = json.dumps({"client": client_kwargs, "concurrency": ev.concurrency,
                               "key": [ev.api_key_env, ev.api_key_file],
                               "calls": call_settings, "limited": limiter is not None},
                              sort_keys=True, default=str)
            prefix = f"izray-eval-{run_id}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"
            retire_evaluators(f"izray-eval-{run_id}-", keep=prefix)
        evaluators = EvaluatorPool(ev, client_kwargs, limiter, call_settings,
                                   str((run_path / "journal").resolve()), prefix, server_key)
        pools.append(evaluators)
        evaluators.check()
        log.info("ready in %.0f s: generator %s (hidden %d), black box at %s", time.monotonic() - t0,
                 info.model, info.hidden, endpoint)
        return Session(generators, evaluators, info, call_settings, owns, extra)
    except Exception as err:
        for actor in extra:
            ray.kill(actor)
        for pool in pools:
            pool.shutdown()
        if owns:
            ray.shutdown()
        unwrapped = unwrap_actor_error(err)
        if unwrapped is not err:
            raise unwrapped from None
        raise
