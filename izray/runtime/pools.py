"""Actor pools: keep every generator and evaluator actor busy with batched work.

The driver enqueues work and :meth:`pump` s; each pool hands out Ray object refs that the
driver waits on. Generation requests from all tasks are batched into each actor's
``generate`` call; each actor has at most ``inflight`` calls outstanding, so new requests
join the next batch instead of queueing behind a long one.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ray

from izray.config import EvaluatorConfig, GeneratorConfig
from izray.generation import GenerationRequest, ModelInfo
from izray.runtime.actors import (
    ACTOR_ENV,
    ACTOR_MAX_RESTARTS,
    ACTOR_MAX_TASK_RETRIES,
    EvaluatorActor,
    GeneratorActor,
)

log = logging.getLogger(__name__)

#: Outstanding generate calls per generator actor: one running, one ready behind it.
GENERATOR_INFLIGHT = 2


@dataclass
class _Slot:
    actor: Any
    inflight: set = field(default_factory=set)


class GeneratorPool:
    """``num_actors`` generator actors fed from one queue.

    Args:
        cfg: Generator section of the config.
        seed: Engine seed.
    """

    def __init__(self, cfg: GeneratorConfig, seed: int) -> None:
        self.cfg = cfg
        kwargs = {"dtype": cfg.dtype, "max_new_tokens": cfg.max_new_tokens,
                  "max_model_len": cfg.max_model_len, "tensor_parallel_size": cfg.tensor_parallel_size,
                  "gpu_memory_utilization": cfg.gpu_memory_utilization,
                  "kv_cache_gb": cfg.kv_cache_gb, "seed": seed, "max_batch": cfg.max_batch}
        opts = {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus * cfg.tensor_parallel_size,
                "max_restarts": ACTOR_MAX_RESTARTS, "max_task_retries": ACTOR_MAX_TASK_RETRIES,
                "runtime_env": {"env_vars": ACTOR_ENV}}
        self.slots = [_Slot(GeneratorActor.options(**opts).remote(cfg.backend, cfg.model, kwargs))
                      for _ in range(cfg.num_actors)]
        self.queue: deque[GenerationRequest] = deque()
        self.batches: dict[ray.ObjectRef, tuple[_Slot, list[GenerationRequest]]] = {}
        self.busy_s = 0.0

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
        """Send queued requests to actors with free capacity; returns the new refs."""
        refs = []
        for slot in sorted(self.slots, key=lambda s: len(s.inflight)):
            while self.queue and len(slot.inflight) < GENERATOR_INFLIGHT:
                n = min(self.cfg.max_batch, len(self.queue))
                batch = [self.queue.popleft() for _ in range(n)]
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

    def shutdown(self) -> None:
        for s in self.slots:
            ray.kill(s.actor)


class EvaluatorPool:
    """``num_actors`` evaluator actors; each call goes to the least loaded one.

    Args:
        cfg: Evaluator section.
        client_kwargs: Client arguments (no key: actors read it themselves).
        limiter: Shared rate limiter actor, or ``None``.
    """

    def __init__(self, cfg: EvaluatorConfig, client_kwargs: dict[str, Any], limiter=None) -> None:
        opts = {"num_cpus": 0.1, "max_restarts": ACTOR_MAX_RESTARTS,
                "max_task_retries": ACTOR_MAX_TASK_RETRIES, "max_concurrency": 1000,
                "runtime_env": {"env_vars": ACTOR_ENV}}
        self.slots = [_Slot(EvaluatorActor.options(**opts).remote(
            client_kwargs, cfg.concurrency, cfg.api_key_env, cfg.api_key_file, limiter))
            for _ in range(cfg.num_actors)]
        self.calls: dict[ray.ObjectRef, _Slot] = {}
        self._rr = itertools.count()

    def check(self) -> None:
        """Fail fast on a bad endpoint, key or model (raises the actor's EndpointError)."""
        ray.get([s.actor.check.remote() for s in self.slots])

    def submit(self, prompts: list[str]) -> ray.ObjectRef:
        slot = min(self.slots, key=lambda s: (len(s.inflight), next(self._rr)))
        ref = slot.actor.evaluate.remote(prompts)
        slot.inflight.add(ref)
        self.calls[ref] = slot
        return ref

    def finish(self, ref: ray.ObjectRef) -> None:
        slot = self.calls.pop(ref)
        slot.inflight.discard(ref)

    def shutdown(self) -> None:
        for s in self.slots:
            ray.kill(s.actor)
