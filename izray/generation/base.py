"""What every generator backend takes and returns, and the shared prompt assembly."""

from __future__ import annotations

import abc
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from izray.errors import GeneratorError
from izray.generation.prompt import GENERATION_STOP, clean_instruction


@dataclass(frozen=True)
class GenerationRequest:
    """One candidate to turn into an instruction.

    Attributes:
        key: Caller's identifier, returned unchanged.
        soft: ``n_tokens x hidden`` float32 soft-prompt embeddings, or ``None`` for none (APE).
        text: Exemplar block plus induction cue (see :func:`~izray.generation.prompt.induction_text`).
        temperature: Sampling temperature; 0 is greedy (InstructZero, Uniform).
        seed: Sampling seed of this request (with ``temperature > 0``), so that the same
            request writes the same instruction again, whatever it is batched with.
    """

    key: str
    soft: np.ndarray | None
    text: str
    temperature: float = 0.0
    seed: int | None = None


@dataclass(frozen=True)
class GenerationResult:
    """The generator's answer for one request: the cleaned instruction and the raw text."""

    key: str
    instruction: str
    raw: str


@dataclass(frozen=True)
class ModelInfo:
    """What the driver needs to build soft prompts for a generator's model."""

    model: str
    backend: str
    hidden: int
    embed_std: float


class Generator(abc.ABC):
    """A model that continues ``[prefix] + soft + embedded(text)`` greedily."""

    info: ModelInfo

    @abc.abstractmethod
    def _generate_embeds(self, embeds: list[torch.Tensor],
                         sampling: list[tuple[float, int | None]]) -> list[str]:
        """Raw continuations for ``L_i x hidden`` prompt embeddings.

        Args:
            embeds: One ``L_i x hidden`` tensor per request.
            sampling: ``(temperature, seed)`` per request; temperature 0 is greedy.
        """

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Generate one instruction per request, in order."""
        if not requests:
            return []
        embeds = [self.assembler.assemble(r.soft, r.text) for r in requests]
        raws = self._generate_embeds(embeds, [(r.temperature, r.seed) for r in requests])
        return [GenerationResult(r.key, clean_instruction(_cut(raw)), raw)
                for r, raw in zip(requests, raws, strict=True)]


def _cut(raw: str) -> str:
    """Apply the stop strings a backend may not have applied itself."""
    end = len(raw)
    for stop in GENERATION_STOP:
        idx = raw.find(stop, 1)
        if idx != -1:
            end = min(end, idx)
    return raw[:end]


class PromptAssembler:
    """Builds ``[special prefix] + soft + text`` embeddings for one model.

    The tokenizer's own special prefix (``<bos>`` for Gemma/Llama, nothing for GPT-2 style
    models) stays first: models are trained to see it at position 0, and soft tokens before
    it put the model off distribution. Text embeddings are cached per text (the exemplar block
    is the same for every candidate of a task).

    Args:
        tokenizer: A transformers tokenizer.
        embed: Maps ``n`` token ids to ``n x hidden`` float32 embeddings as the model's first
            layer sees them.
        cache_size: Texts whose embeddings are kept.
        chat: Wrap the text in the tokenizer's chat template as one user turn followed by
            the assistant's turn (``generator.chat_template``), as the reference code does
            for Vicuna/WizardLM; the soft tokens stay right after the special prefix.

    Raises:
        GeneratorError: ``chat`` for a tokenizer without a chat template (a base model).
    """

    def __init__(self, tokenizer, embed: Callable[[list[int]], torch.Tensor],
                 cache_size: int = 256, chat: bool = False) -> None:
        if chat and not getattr(tokenizer, "chat_template", None):
            raise GeneratorError(
                "generator.chat_template is on, but this model's tokenizer has no chat template "
                "(a base model?); set generator.chat_template=false")
        self.tokenizer = tokenizer
        self.embed = embed
        self.chat = chat
        self.prefix_ids = list(tokenizer("", add_special_tokens=True).input_ids)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size

    def format(self, text: str) -> str:
        """``text`` as the model reads it: as is, or as a chat user turn + assistant cue."""
        if not self.chat:
            return text
        out = self.tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                 tokenize=False, add_generation_prompt=True)
        bos = getattr(self.tokenizer, "bos_token", None)
        return out[len(bos):] if bos and out.startswith(bos) else out

    def text_embeds(self, text: str) -> torch.Tensor:
        """``L x hidden`` embeddings of ``text`` (no special tokens)."""
        hit = self._cache.get(text)
        if hit is not None:
            self._cache.move_to_end(text)
            return hit
        ids = list(self.tokenizer(text, add_special_tokens=False).input_ids)
        out = self.embed(ids).float()
        self._cache[text] = out
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return out

    def assemble(self, soft: np.ndarray | None, text: str) -> torch.Tensor:
        """``(len(prefix) + n_tokens + L) x hidden`` float32 prompt embeddings (no soft
        tokens when ``soft`` is None)."""
        parts = []
        if self.prefix_ids:
            parts.append(self.embed(self.prefix_ids).float())
        if soft is not None:
            parts.append(torch.as_tensor(np.asarray(soft, dtype=np.float32)))
        parts.append(self.text_embeds(self.format(text)))
        return torch.cat(parts, dim=0)


def local_checkpoint(model: str) -> Path:
    """A local directory for ``model`` (a path, or a hub id downloaded to the hub cache)."""
    path = Path(model)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download  # only needed for hub ids

    small = ["*.json", "*.model", "*.txt", "*.tiktoken"]
    path = Path(snapshot_download(model, allow_patterns=[*small, "*.safetensors"]))
    if not any(path.glob("*.safetensors")):  # older repos: weights only as .bin
        path = Path(snapshot_download(model, allow_patterns=[*small, "*.bin"]))
    return path
