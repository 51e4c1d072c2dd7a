"""Actor pools: keep every generator and evaluator actor busy with batched work.

The driver enqueues work and :meth:`pump` s; each pool hands out Ray object refs that the
driver waits on. Generation requests from all tasks are batched into each actor's
``generate`` call; each actor has at most ``inflight`` calls outstanding, so new requests
join the next batch instead of queueing behind a long one.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.autoscaler.sdk import request_resources
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from izray.config import EvaluatorConfig, GeneratorConfig
from izray.generation import GenerationRequest, ModelInfo
from izray.runtime.actors import (
    ACTOR_ENV,
    ACTOR_MAX_RESTARTS,
    ACTOR_MAX_TASK_RETRIES,
    EvaluatorActor,
    GeneratorActor,
)
from izray.runtime.calls import get_unwrapped

log = logging.getLogger(__name__)

#: Outstanding generate calls per generator actor: one running, one ready behind it.
GENERATOR_INFLIGHT = 2


@dataclass
class _Slot:
    actor: Any
    inflight: set = field(default_factory=set)
    ready: bool = True
    info_ref: Any = None
    pg: Any = None  # the engine's placement group (tensor parallel > 1)


def auto_pool_size(cluster_gpus: float, gpus_per_actor: float, max_actors: int | None) -> int:
    """Generator actors that fit the cluster's GPUs (at least 1; capped by ``max_actors``)."""
    n = int(cluster_gpus // gpus_per_actor) if gpus_per_actor > 0 else 1
    n = max(1, n)
    return min(n, max_actors) if max_actors else n


class GeneratorPool:
    """Generator actors fed from one queue; elastic when ``num_actors`` is ``auto``.

    With ``auto`` the pool starts with as many actors as the cluster's GPUs allow and
    :meth:`scale` adds actors when the autoscaler has added GPU nodes. New actors take work
    once their engine is up. With ``auto`` and ``max_actors: N`` (and GPUs per actor), the
    pool also asks the autoscaler for N actors' worth of resources
    (``ray.autoscaler.sdk.request_resources``) and withdraws the request at :meth:`shutdown`.

    Args:
        cfg: Generator section of the config.
        seed: Engine seed.
        log_path: Where the actors' engine output goes (warnings, progress bars), e.g.
            ``OUT/logs/generator.log``; izray's own lines still reach the driver.
        served: Settings of the embedded server when it is the generator too
            (``base_url``, ``served_model``, ``server_key``: the per-run key, not a user's).
    """

    def __init__(self, cfg: GeneratorConfig, seed: int, log_path: str | None = None,
                 served: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.log_path = log_path
        self.kwargs = {"dtype": cfg.dtype, "max_new_tokens": cfg.max_new_tokens,
                       "max_model_len": cfg.max_model_len,
                       "tensor_parallel_size": cfg.tensor_parallel_size,
                       "gpu_memory_utilization": cfg.gpu_memory_utilization,
                       "kv_cache_gb": cfg.kv_cache_gb, "seed": seed, "max_batch": cfg.max_batch,
                       "chat_template": cfg.chat_template, "base_url": cfg.base_url,
                       "served_model": cfg.served_model, "api_key_env": cfg.api_key_env,
                       "concurrency": cfg.concurrency, **(served or {})}
        self.gpus_per_actor = cfg.num_gpus * cfg.tensor_parallel_size
        self.opts = {"num_cpus": cfg.num_cpus, "num_gpus": self.gpus_per_actor,
                     "max_restarts": ACTOR_MAX_RESTARTS,
                     "max_task_retries": ACTOR_MAX_TASK_RETRIES,
                     "runtime_env": {"env_vars": ACTOR_ENV}}
        self.slots: list[_Slot] = []
        self.queue: deque[GenerationRequest] = deque()
        self.batches: dict[ray.ObjectRef, tuple[_Slot, list[GenerationRequest]]] = {}
        self.requested: list[dict] = []
        self._request_capacity()
        for _ in range(self.target_size()):
            self._add(ready=True)

    @property
    def elastic(self) -> bool:
        return self.cfg.num_actors == "auto"

    def target_size(self) -> int:
        """How many actors the pool should have now."""
        if not self.elastic:
            return int(self.cfg.num_actors)
        gpus = ray.cluster_resources().get("GPU", 0.0)
        return auto_pool_size(gpus, self.gpus_per_actor, self.cfg.max_actors)

    def _request_capacity(self) -> None:
        """Ask the autoscaler for ``max_actors`` actors' resources (``auto`` pools on GPUs)."""
        if not (self.elastic and self.cfg.max_actors and self.gpus_per_actor > 0):
            return
        bundle = {"GPU": float(self.gpus_per_actor), "CPU": float(self.cfg.num_cpus)}
        bundles = [dict(bundle) for _ in range(self.cfg.max_actors)]
        try:
            request_resources(bundles=bundles)
        except Exception as err:  # noqa: BLE001 - the pool still follows what the cluster has
            log.warning("generator pool: could not ask the autoscaler for GPUs (%s)",
                        str(err).splitlines()[0][:200] if str(err) else type(err).__name__)
            return
        self.requested = bundles
        log.info("generator pool: asked the autoscaler for %d x %s (generator.max_actors)",
                 len(bundles), bundle)

    def engine_placement(self) -> tuple[dict[str, Any], Any]:
        """Actor options for one engine, and its placement group (or None).

        Tensor parallel 1: the actor holds the engine's GPUs. Tensor parallel ``k > 1``: a
        placement group of ``k`` bundles of ``generator.num_gpus`` GPUs each, packed on one
        node (``STRICT_PACK``), the actor in bundle 0 holding no GPU itself, and vLLM's Ray
        executor placing one worker per rank in the group (the pattern of Ray Serve LLM and
        Ray Data LLM). One actor holding all ``k`` GPUs would leave vLLM's workers, which
        ask Ray for a GPU each, waiting for GPUs the actor already holds.
        """
        tp = self.cfg.tensor_parallel_size
        if tp <= 1 or self.cfg.num_gpus <= 0 or self.cfg.backend not in ("vllm", "sim"):
            return dict(self.opts), None
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        bundles = ([{"GPU": float(self.cfg.num_gpus), "CPU": float(self.cfg.num_cpus)}]
                   + [{"GPU": float(self.cfg.num_gpus)} for _ in range(tp - 1)])
        pg = placement_group(bundles, strategy="STRICT_PACK")
        opts = dict(self.opts, num_gpus=0, scheduling_strategy=PlacementGroupSchedulingStrategy(
            pg, placement_group_bundle_index=0, placement_group_capture_child_tasks=True))
        return opts, pg

    def _add(self, ready: bool) -> _Slot:
        opts, pg = self.engine_placement()
        kwargs = dict(self.kwargs)
        if pg is not None:
            kwargs["distributed_executor_backend"] = "ray"  # vLLM's workers in the group
        actor = GeneratorActor.options(**opts).remote(self.cfg.backend, self.cfg.model,
                                                      kwargs, self.log_path)
        slot = _Slot(actor, ready=ready, pg=pg)
        if not ready:
            slot.info_ref = actor.info.remote()
        self.slots.append(slot)
        return slot

    def scale(self) -> int:
        """Grow an elastic pool to the cluster's current GPU capacity; returns actors added."""
        if not self.elastic:
            return 0
        added = 0
        while len(self.slots) < self.target_size():
            self._add(ready=False)
            added += 1
        if added:
            log.info("generator pool: %d new actor(s) for new GPU capacity (pool of %d)", added,
                     len(self.slots))
        return added

    def starting_refs(self) -> list[ray.ObjectRef]:
        """Refs that resolve when newly added actors are ready."""
        return [s.info_ref for s in self.slots if not s.ready and s.info_ref is not None]

    def on_started(self, ref: ray.ObjectRef) -> None:
        for slot in self.slots:
            if slot.info_ref == ref:
                slot.info_ref = None
                try:
                    ray.get(ref)
                    slot.ready = True
                    log.info("generator pool: a new actor is ready (%d ready)",
                             sum(s.ready for s in self.slots))
                except ray.exceptions.RayError as err:
                    log.warning("generator pool: a new actor failed to start: %s",
                                str(err).splitlines()[0][:200])
                    self.slots.remove(slot)
                return

    @property
    def size(self) -> int:
        return sum(s.ready for s in self.slots)

    def info_refs(self) -> list[ray.ObjectRef]:
        return [s.actor.info.remote() for s in self.slots]

    @staticmethod
    def check_infos(infos: Sequence[ModelInfo]) -> ModelInfo:
        first = infos[0]
        for other in infos[1:]:
            if (other.hidden, other.model) != (first.hidden, first.model):
                raise RuntimeError("generator actors loaded different models")
        return first

    def enqueue(self, requests: Sequence[GenerationRequest]) -> None:
        self.queue.extend(requests)

    def pump(self) -> list[ray.ObjectRef]:
        """Send queued requests to ready actors with free capacity; returns the new refs.

        Requests are spread over the free actors, so a burst is shared instead of filling the
        first actor's batch.
        """
        refs = []
        while self.queue:
            free = [s for s in self.slots if s.ready and len(s.inflight) < GENERATOR_INFLIGHT]
            if not free:
                break
            slot = min(free, key=lambda s: len(s.inflight))
            n = min(self.cfg.max_batch, max(1, -(-len(self.queue) // len(free))))
            batch = [self.queue.popleft() for _ in range(min(n, len(self.queue)))]
            ref = slot.actor.generate.remote(batch)
            slot.inflight.add(ref)
            self.batches[ref] = (slot, batch)
            refs.append(ref)
        return refs

    def finish(self, ref: ray.ObjectRef) -> list[GenerationRequest]:
        """Forget a completed call; returns the requests it carried."""
        slot, batch = self.batches.pop(ref)
        slot.inflight.discard(ref)
        return batch

    @property
    def active_calls(self) -> int:
        return len(self.batches)

    def stats(self) -> list[dict]:
        """Per-actor counters (calls, prompts, busy seconds) for benchmarks."""
        return ray.get([s.actor.stats.remote() for s in self.slots if s.ready])

    def shutdown(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for s in self.slots:
            ray.kill(s.actor)
            if s.pg is not None:
                remove_placement_group(s.pg)
        if self.requested:  # let the autoscaler scale the GPU nodes down again
            try:
                request_resources(bundles=[])
                self.requested = []
            except Exception as err:  # noqa: BLE001
                log.warning("generator pool: could not withdraw the GPU request (%s)",
                            type(err).__name__)


class EvaluatorPool:
    """``num_actors`` evaluator actors; a request goes to the actor its first prompt hashes to
    (:meth:`route`).

    Args:
        cfg: Evaluator section.
        client_kwargs: Client arguments (no key: actors read it themselves).
        limiter: Shared rate limiter actor, or ``None``.
        call_settings: Cache-key settings (journal, pay-once inside the actors).
        journal_dir: The run's journal directory.
        name_prefix: If set, the actors are named ``{prefix}-{i}`` and detached: they outlive
            a crashed driver, finish the calls it left in flight (journaling them), and a
            resumed driver picks them up again by name.
        server_key: The embedded server's per-run key, if the black box is that server.
    """

    def __init__(self, cfg: EvaluatorConfig, client_kwargs: dict[str, Any], limiter=None,
                 call_settings: dict | None = None, journal_dir: str | None = None,
                 name_prefix: str | None = None, server_key: str | None = None) -> None:
        opts = {"num_cpus": 0.1, "max_restarts": ACTOR_MAX_RESTARTS,
                "max_task_retries": ACTOR_MAX_TASK_RETRIES, "max_concurrency": 1000,
                "runtime_env": {"env_vars": ACTOR_ENV}}
        if cfg.placement == "driver":  # the run directory is only mounted here
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=False)
        self.opts = opts
        self.limiter = limiter  # polled for metrics (izray.metrics)
        self.slots = []
        for i in range(cfg.num_actors):
            named = {}
            if name_prefix:
                named = {"name": f"{name_prefix}-{i}", "namespace": "izray",
                         "lifetime": "detached", "get_if_exists": True}
            actor = EvaluatorActor.options(**opts, **named).remote(
                client_kwargs, cfg.concurrency, cfg.api_key_env, cfg.api_key_file, limiter,
                call_settings, journal_dir, server_key)
            self.slots.append(_Slot(actor))
        self.calls: dict[ray.ObjectRef, _Slot] = {}

    def check(self) -> None:
        """Fail fast on a bad endpoint, key or model (raises the actor's EndpointError)."""
        for ref in [s.actor.check.remote() for s in self.slots]:
            get_unwrapped(ref)

    def route(self, key: str) -> int:
        """The actor for a request whose first prompt is ``key``: fixed, so a resumed driver
        sends the work a killed one left in flight to the very actor that holds it (a
        detached actor shares a call for a prompt it is already answering, instead of paying
        twice)."""
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % len(self.slots)

    def submit(self, prompts: list[str], tag: str = "", route: str | None = None) -> ray.ObjectRef:
        """Send ``prompts`` to the actor ``route`` (default: the first prompt) maps to."""
        slot = self.slots[self.route(route if route is not None else prompts[0])]
        ref = slot.actor.evaluate.remote(prompts, tag)
        slot.inflight.add(ref)
        self.calls[ref] = slot
        return ref

    def finish(self, ref: ray.ObjectRef) -> None:
        slot = self.calls.pop(ref)
        slot.inflight.discard(ref)

    def shutdown(self) -> None:
        for s in self.slots:
            ray.kill(s.actor)
