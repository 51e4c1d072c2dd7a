"""Token embeddings read straight from a checkpoint's safetensors, without loading the model.

vLLM takes ``prompt_embeds`` but keeps its weights in its own engine process, so the
generator actor needs its own view of the input embedding table to embed exemplar text. The
table is memory-mapped: only the rows of the tokens actually used are read.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import torch

from izray.errors import GeneratorError

#: Tensor names of input embeddings in common architectures (suffix match).
EMBEDDING_KEYS = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight",
                  "tok_embeddings.weight")
_NP_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def embedding_multiplier(config: dict) -> float:
    """Factor the model applies to looked-up embeddings before its first layer.

    Gemma models scale by ``sqrt(hidden_size)`` inside the embedding module; vLLM expects
    ``prompt_embeds`` *after* that scaling (feeding scaled token embeddings reproduces the
    text prompt's output exactly).
    """
    text_cfg = config.get("text_config", config)
    model_type = str(text_cfg.get("model_type", config.get("model_type", "")))
    if model_type.startswith("gemma"):
        return math.sqrt(float(text_cfg["hidden_size"]))
    return 1.0


class EmbeddingTable:
    """Row lookups into a checkpoint's input-embedding matrix.

    Args:
        model_dir: A local checkpoint directory with ``config.json`` and ``*.safetensors``.

    Attributes:
        hidden: Embedding width.
        multiplier: Model-specific factor (see :func:`embedding_multiplier`).
    """

    def __init__(self, model_dir: str | Path) -> None:
        self.model_dir = Path(model_dir)
        try:
            config = json.loads((self.model_dir / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise GeneratorError(f"cannot read {self.model_dir}/config.json: {err}") from err
        self.multiplier = embedding_multiplier(config)
        if any(self.model_dir.glob("*.safetensors")):
            self._rows, self._bf16 = self._open()
        else:  # older checkpoints ship only pytorch_model*.bin
            self._rows, self._bf16 = self._open_bin(), False
        self.vocab, self.hidden = self._rows.shape

    def _open(self) -> tuple[np.ndarray, bool]:
        files = sorted(self.model_dir.glob("*.safetensors"))
        if not files:
            raise GeneratorError(f"no *.safetensors files in {self.model_dir}")
        for file in files:
            with open(file, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
            for name, meta in header.items():
                if name != "__metadata__" and name.endswith(EMBEDDING_KEYS):
                    dtype = meta["dtype"]
                    if dtype not in _NP_DTYPES:
                        raise GeneratorError(f"embedding dtype {dtype} in {file} is not supported")
                    start, _ = meta["data_offsets"]
                    rows = np.memmap(file, dtype=_NP_DTYPES[dtype], mode="r",
                                     offset=8 + n + start, shape=tuple(meta["shape"]))
                    return rows, dtype == "BF16"
        raise GeneratorError(f"no input-embedding tensor ({', '.join(EMBEDDING_KEYS)}) in "
                             f"{self.model_dir}")

    def _open_bin(self) -> np.ndarray:
        files = sorted(self.model_dir.glob("pytorch_model*.bin"))
        index = self.model_dir / "pytorch_model.bin.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text()).get("weight_map", {})
            names = [k for k in weight_map if k.endswith(EMBEDDING_KEYS)]
            files = [self.model_dir / weight_map[names[0]]] if names else files
        for file in files:
            state = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
            for name, tensor in state.items():
                if name.endswith(EMBEDDING_KEYS):
                    return tensor.float().numpy()
        raise GeneratorError(f"no *.safetensors or pytorch_model*.bin with input embeddings in "
                             f"{self.model_dir}")

    def lookup(self, ids: list[int] | np.ndarray) -> torch.Tensor:
        """Embeddings as the model's first layer sees them.

        Args:
            ids: ``n`` token ids.

        Returns:
            ``n x hidden`` float32 tensor.
        """
        rows = np.asarray(self._rows[np.asarray(ids, dtype=np.int64)])
        if self._bf16:
            t = torch.from_numpy(rows.astype(np.int16)).view(torch.bfloat16).float()
        else:
            t = torch.from_numpy(rows.astype(np.float32))
        return t * self.multiplier

    def std(self, sample: int = 4096, seed: int = 0) -> float:
        """Std of (scaled) token embeddings over a fixed random sample of the vocabulary."""
        ids = np.random.default_rng(seed).choice(self.vocab, size=min(sample, self.vocab),
                                                 replace=False)
        return float(self.lookup(np.sort(ids)).std())
