"""Served backend: a running vLLM OpenAI server does the generation, over HTTP.

Operators often run vLLM already (a fleet behind a load balancer, a Ray Serve LLM
deployment), scaled and shared on their own. Started with ``--enable-prompt-embeds``, such a
server takes ``prompt_embeds`` on its Completions API: a base64-encoded ``torch.save`` of one
``L x hidden`` tensor per prompt. This backend builds exactly the tensors the in-process
vLLM backend would (special prefix + soft prompt + embedded exemplar text, from the same
model's embedding table, read locally from its checkpoint) and sends them there, so the
same ``z`` gives the same instruction. No GPU and no engine in the actor: only the
tokenizer and the memory-mapped embedding rows.

The Completions API applies no chat template to ``prompt_embeds``; with
``generator.chat_template`` the template is applied here, before embedding, as in-process.

Example (config)::

    generator:
      backend: served
      model: /shared/models/vicuna-13b-v1.3   # its tokenizer and embedding table
      base_url: http://vllm.internal:8000/v1
      served_model: vicuna-13b
"""

from __future__ import annotations

import base64
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import torch

from izray.config import redact_url
from izray.errors import GeneratorError, IzrayError
from izray.generation.base import Generator, ModelInfo, PromptAssembler, local_checkpoint
from izray.generation.embeddings import EmbeddingTable
from izray.generation.prompt import GENERATION_STOP

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def served_model_name(client, shown: str, wanted: str | None,
                      error: type[IzrayError] = GeneratorError) -> str:
    """The model to ask ``client``'s server for: ``wanted`` if it lists it, else its first.

    Args:
        client: An ``openai.OpenAI`` client of the generator server.
        shown: The server's URL as it may be printed (credentials removed).
        wanted: ``generator.served_model`` (``None``: the first model listed).
        error: What to raise (``izray validate`` raises an EndpointError).

    Raises:
        IzrayError: the server does not answer, lists nothing, or not ``wanted``.
    """
    import openai

    try:
        listed = [m.id for m in client.models.list().data]
    except openai.OpenAIError as err:
        raise error(f"generator.base_url: the generator server {shown} did not answer "
                    f"({type(err).__name__}); start it or fix the URL") from None
    if not listed:
        raise error(f"generator.base_url: the generator server {shown} lists no model")
    if wanted is not None and wanted not in listed:
        raise error(f"generator.served_model: the generator server {shown} does not serve "
                    f"{wanted!r} (it serves {listed})")
    return wanted or listed[0]


def encode_embeds(x: torch.Tensor) -> str:
    """``x`` as the server reads ``prompt_embeds``: base64 of ``torch.save`` bytes."""
    with io.BytesIO() as buf:
        torch.save(x.contiguous(), buf)
        return base64.b64encode(buf.getvalue()).decode("ascii")


class ServedGenerator(Generator):
    """Soft prompts sent as ``prompt_embeds`` to a vLLM OpenAI server.

    Args:
        model: Local checkpoint directory or hub id of the model the server serves (its
            tokenizer and input-embedding table are read here).
        base_url: The server's OpenAI base URL (``http://host:port/v1``).
        served_model: Model name on the server (``None``: the first one it lists).
        api_key: The server's key (``--api-key``), or ``None``.
        dtype: Dtype of the tensors sent: ``auto`` (float32; the server casts to its own),
            or the server's dtype to halve the bytes.
        max_new_tokens: Greedy tokens per instruction.
        chat_template: Apply the tokenizer's chat template before embedding.
        concurrency: Requests in flight (the server batches them continuously).
        timeout_s: Seconds per request.
        max_retries: Retries of a failed request (the openai client's back-off).

    Raises:
        GeneratorError: the server is unreachable, lists no model, or is not started with
            ``--enable-prompt-embeds`` (seen at the first request).
    """

    def __init__(self, model: str, *, base_url: str, served_model: str | None = None,
                 api_key: str | None = None, dtype: str = "auto", max_new_tokens: int = 64,
                 chat_template: bool = False, concurrency: int = 16, timeout_s: float = 120.0,
                 max_retries: int = 3) -> None:
        import openai
        from transformers import AutoTokenizer

        path = local_checkpoint(model)
        self.table = EmbeddingTable(path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError) as err:
            raise GeneratorError(f"cannot load the tokenizer of {model}: "
                                 f"{str(err).splitlines()[0]}") from err
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "EMPTY",
                                    timeout=timeout_s, max_retries=max_retries)
        self.base_url = base_url
        served_model = served_model_name(self.client, redact_url(base_url), served_model)
        self.served_model = served_model
        self.dtype = _DTYPES.get(dtype, torch.float32)
        self.max_new_tokens = max_new_tokens
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="izray-gen")
        self.assembler = PromptAssembler(tokenizer, self.table.lookup, chat=chat_template)
        self.info = ModelInfo(model=model, backend="served", hidden=self.table.hidden,
                              embed_std=self.table.std())
        log.info("generator: %s on %s (prompt embeds)", served_model, base_url)

    def _one(self, embeds: torch.Tensor, temperature: float, seed: int | None) -> str:
        import openai

        extra = {"prompt_embeds": encode_embeds(embeds.to(self.dtype))}
        try:
            out = self.client.completions.create(
                model=self.served_model, prompt="", max_tokens=self.max_new_tokens,
                temperature=max(temperature, 0.0), seed=seed if temperature > 0 else None,
                stop=list(GENERATION_STOP), extra_body=extra)
        except openai.BadRequestError as err:
            hint = ("; start the server with --enable-prompt-embeds"
                    if "prompt-embeds" in str(err) or "prompt_embeds" in str(err) else "")
            raise GeneratorError(f"the generator server refused the soft prompt: "
                                 f"{str(err).splitlines()[0][:300]}{hint}") from None
        except openai.OpenAIError as err:
            raise GeneratorError(f"the generator server {self.base_url} failed: "
                                 f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
                                 ) from None
        return out.choices[0].text if out.choices else ""

    def _generate_embeds(self, embeds: list[torch.Tensor],
                         sampling: list[tuple[float, int | None]]) -> list[str]:
        futures = [self.pool.submit(self._one, e, t, s)
                   for e, (t, s) in zip(embeds, sampling, strict=True)]
        return [f.result() for f in futures]


def server_key(env_name: str | None) -> str | None:
    """The generator server's key from this process's environment (never through Ray)."""
    return os.environ.get(env_name) if env_name else None
