"""The fixed random projection from the search box to soft-prompt embeddings.

InstructZero optimizes a low-dimensional ``z`` in ``[-1, 1]^d`` and maps it with a fixed
random matrix ``A`` (``d x (n_tokens * hidden)``) to ``n_tokens`` embedding vectors that
are put in front of the generator's prompt.

The reference draws ``A`` from uniform(-1, 1) with no scaling. Here ``A`` is uniform(-1, 1)
times a factor chosen so that, for ``z`` uniform on the box, the projected coordinates have
standard deviation ``scale * embed_std``, where ``embed_std`` is the std of the model's own
(scaled) token embeddings. With the default ``scale = 1`` soft tokens have the magnitude of
real tokens whatever the model: unscaled, Vicuna's soft tokens are ~50x its token scale.
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from izray.errors import RunStateError


def stable_seed(*parts: object) -> int:
    """A 31-bit seed from the parts' text, identical across processes and Python versions."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class SoftPromptProjection:
    """``z -> A z`` reshaped to ``n_tokens x hidden``.

    Attributes:
        matrix: ``d x (n_tokens * hidden)`` float32.
        n_tokens: Soft tokens per prompt.
        hidden: Hidden size of the generator model.
        seed: The seed ``matrix`` was drawn from (saved with the run).
    """

    matrix: np.ndarray
    n_tokens: int
    hidden: int
    seed: int

    @classmethod
    def create(cls, dim: int, n_tokens: int, hidden: int, embed_std: float, scale: float,
               seed: int) -> SoftPromptProjection:
        """Draw a projection.

        Args:
            dim: Search-box dimension ``d``.
            n_tokens: Soft tokens.
            hidden: Model hidden size.
            embed_std: Std of the model's token embeddings as fed to its first layer.
            scale: Target std of projected coordinates, relative to ``embed_std``.
            seed: Random seed.
        """
        rng = np.random.default_rng(seed)
        raw = rng.uniform(-1.0, 1.0, size=(dim, n_tokens * hidden))
        # Var(sum_i z_i a_ij) = d * Var(z) * Var(a) = d * (1/3) * (1/3) for uniform z and a.
        factor = scale * embed_std / math.sqrt(dim / 9.0)
        return cls((raw * factor).astype(np.float32), n_tokens, hidden, seed)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[0])

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Project.

        Args:
            z: ``d`` or ``n x d`` points in ``[-1, 1]^d``.

        Returns:
            ``n_tokens x hidden`` (for one point) or ``n x n_tokens x hidden`` float32.
        """
        z = np.asarray(z, dtype=np.float32)
        if z.shape[-1] != self.dim:
            raise ValueError(f"z has dimension {z.shape[-1]}, projection expects {self.dim}")
        out = z @ self.matrix
        return out.reshape(*z.shape[:-1], self.n_tokens, self.hidden)

    def save(self, path: str | Path) -> None:
        """Write to ``path`` (``.npz``), atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, matrix=self.matrix, n_tokens=self.n_tokens, hidden=self.hidden,
                 seed=self.seed)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> SoftPromptProjection:
        """Read a saved projection.

        Raises:
            RunStateError: the file is truncated, not an ``.npz`` or lacks a field.
        """
        try:
            with np.load(Path(path)) as f:
                return cls(f["matrix"].astype(np.float32), int(f["n_tokens"]), int(f["hidden"]),
                           int(f["seed"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise RunStateError(f"{path} is not a readable projection ({type(err).__name__}: "
                                f"{str(err)[:100]}); without it the task's soft prompts cannot be "
                                "reproduced: restore the file or start a new run") from None
