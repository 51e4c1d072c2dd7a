"""A simulated generator: no model, a known landscape, and a GPU-like latency model.

For fast tests of the orchestration, for benchmarks that measure izray's scaling apart from
this machine's CPUs, and for operators' dry runs against the black-box simulator
(:mod:`izray.testing.simulator`).

It reads the exemplars in the prompt text, works out which simple operation they show
(the simulator's keyword operations: plural, first letter, larger number, ...), and writes
an instruction whose quality depends on the soft prompt: a fixed random linear feature of the
soft embeddings picks one instruction from a ladder running from one that names the right
operation to ones that name a wrong one or none. So BO has a real, learnable landscape.

Latency follows a throughput model of one GPU engine generating a batch of ``b`` prompts:
``t(b) = overhead_s + max_new_tokens * (per_token_s + per_seq_token_s * b)``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import numpy as np
import torch

from izray.generation.base import Generator, ModelInfo

#: Default latency parameters, from vLLM decoding a ~7B model on one A100-class GPU: ~25 ms
#: per step at small batch, growing by ~0.2 ms per extra sequence in the batch, plus ~50 ms of
#: scheduling/prefill per call (public vLLM benchmark figures, rounded).
OVERHEAD_S = 0.05
PER_TOKEN_S = 0.025
PER_SEQ_TOKEN_S = 0.0002

_LADDERS = {
    "plural": ["Write the plural form of the noun.", "Write the noun in plural.",
               "Write the word.", "Write the word in capital letters."],
    "first letter": ["Write the first letter of the word.", "Give the first letter.",
                     "Write the word.", "Write the last item of the list."],
    "larger": ["Write the larger of the two numbers.", "Pick the larger number.",
               "Write the numbers.", "Write the smaller number."],
    "last": ["Write the last item of the list.", "Name the last item.",
             "Write the list.", "Write the first letter of the word."],
}
_GENERIC = ["Answer the question.", "Repeat the input.", "Write the output.",
            "Describe the input."]
#: Harmless endings, picked by two more features of the soft prompt, so that nearby soft
#: prompts give different texts (as real generators do) while the meaning stays the same.
_STYLE = ["", "Be brief.", "Be precise.", "Answer directly.", "Keep it short.", "Be exact.",
          "No explanation.", "Use lower case.", "One answer only.", "Think first.",
          "Be careful.", "Be concise."]
_TONE = ["", "Thanks.", "Please.", "Quickly.", "Carefully.", "Simply.", "Clearly.",
         "Exactly.", "Calmly.", "Plainly.", "Neatly.", "Briefly."]
_OPS = {
    "plural": lambda x: x + "s",
    "first letter": lambda x: x[:1].lower(),
    "larger": lambda x: max(re.findall(r"-?\d+", x), key=int) if re.findall(r"\d+", x) else "",
    "last": lambda x: x.split(",")[-1].strip(),
}


def detect_operation(text: str) -> str | None:
    """The operation the exemplars in ``text`` show, if one matches most of them."""
    pairs = re.findall(r"Input: (.*?)\nOutput: (.*?)(?:\n|$)", text)
    best, best_hits = None, 0
    for name, op in _OPS.items():
        hits = 0
        for x, y in pairs:
            try:
                hits += op(x).strip().lower() == y.strip().lower()
            except (ValueError, IndexError):
                pass
        if hits > best_hits:
            best, best_hits = name, hits
    return best if pairs and best_hits * 2 >= len(pairs) else None


class SimulatedGenerator(Generator):
    """Instructions from soft prompts without a model.

    Args:
        hidden: Embedding width reported to the driver.
        max_new_tokens: Tokens "generated" per instruction (drives latency).
        overhead_s: Per-call latency.
        per_token_s: Per decoding step latency.
        per_seq_token_s: Extra per step for each sequence in the batch.
        seed: Seed of the fixed random feature.
        sleep: ``time.sleep`` (injected in tests).
    """

    def __init__(self, *, hidden: int = 64, max_new_tokens: int = 64,
                 overhead_s: float = OVERHEAD_S, per_token_s: float = PER_TOKEN_S,
                 per_seq_token_s: float = PER_SEQ_TOKEN_S, seed: int = 0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.hidden = hidden
        self.max_new_tokens = max_new_tokens
        self.overhead_s = overhead_s
        self.per_token_s = per_token_s
        self.per_seq_token_s = per_seq_token_s
        self.sleep = sleep
        self.busy_s = 0.0
        self.calls = 0
        self._rng = np.random.default_rng(seed)
        self._w: np.ndarray | None = None
        self.info = ModelInfo(model="sim", backend="sim", hidden=hidden, embed_std=1.0)
        self.assembler = None

    def batch_latency(self, b: int) -> float:
        """Seconds one call with ``b`` prompts takes under the throughput model."""
        return self.overhead_s + self.max_new_tokens * (self.per_token_s + self.per_seq_token_s * b)

    def _features(self, soft: np.ndarray) -> np.ndarray:
        """Three fixed random linear features of the soft prompt, squashed into (0, 1)."""
        flat = np.asarray(soft, dtype=np.float64).reshape(-1)
        if self._w is None or self._w.shape[1] != flat.shape[0]:
            self._w = self._rng.standard_normal((3, flat.shape[0])) / np.sqrt(flat.shape[0])
        return 1.0 / (1.0 + np.exp(-2.0 * (self._w @ flat)))

    def instruction_for(self, soft: np.ndarray, text: str) -> str:
        """The instruction this soft prompt and exemplar text produce (deterministic)."""
        op = detect_operation(text)
        ladder = _LADDERS.get(op, _GENERIC) if op else _GENERIC
        u, v, w = self._features(soft)
        base = ladder[min(len(ladder) - 1, int((1.0 - u) * len(ladder)))]
        style = _STYLE[min(len(_STYLE) - 1, int(v * len(_STYLE)))]
        tone = _TONE[min(len(_TONE) - 1, int(w * len(_TONE)))]
        return " ".join(t for t in (base, style, tone) if t)

    def generate(self, requests):
        from izray.generation.base import GenerationResult

        if not requests:
            return []
        t = self.batch_latency(len(requests))
        self.sleep(t)
        self.busy_s += t
        self.calls += 1
        return [GenerationResult(r.key, self.instruction_for(r.soft, r.text), "")
                for r in requests]

    def _generate_embeds(self, embeds: list[torch.Tensor]) -> list[str]:  # pragma: no cover
        raise NotImplementedError("the simulated generator works on requests directly")
