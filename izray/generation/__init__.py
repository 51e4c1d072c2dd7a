"""Generation: soft prompt + exemplars -> instruction, on vLLM or transformers."""

from izray.generation.base import (
    GenerationRequest,
    GenerationResult,
    Generator,
    ModelInfo,
    PromptAssembler,
)
from izray.generation.prompt import clean_instruction, induction_text

__all__ = [
    "GenerationRequest",
    "GenerationResult",
    "Generator",
    "ModelInfo",
    "PromptAssembler",
    "build_generator",
    "clean_instruction",
    "induction_text",
]


def build_generator(backend: str, model: str, **kwargs) -> Generator:
    """Construct the backend named by ``generator.backend`` on the resolved ``model`` path."""
    if backend == "sim":
        from izray.generation.sim_backend import HARD_MODEL, SimulatedGenerator

        keys = ("max_new_tokens", "seed")
        return SimulatedGenerator(landscape="hard" if model == HARD_MODEL else "classic",
                                  **{k: v for k, v in kwargs.items() if k in keys})
    if backend == "vllm":
        from izray.generation.vllm_backend import VLLMGenerator

        keys = ("dtype", "max_new_tokens", "max_model_len", "tensor_parallel_size",
                "gpu_memory_utilization", "kv_cache_gb", "seed", "chat_template",
                "distributed_executor_backend")
        return VLLMGenerator(model, **{k: v for k, v in kwargs.items() if k in keys})
    if backend == "served":
        from izray.generation.served_backend import ServedGenerator, server_key

        keys = ("dtype", "max_new_tokens", "chat_template", "base_url", "served_model",
                "concurrency")
        key = kwargs.get("server_key") or server_key(kwargs.get("api_key_env"))
        return ServedGenerator(model, api_key=key, **{k: v for k, v in kwargs.items()
                                                      if k in keys})
    from izray.generation.hf_backend import HFGenerator

    keys = ("dtype", "max_new_tokens", "max_batch", "chat_template")
    return HFGenerator(model, **{k: v for k, v in kwargs.items() if k in keys})
