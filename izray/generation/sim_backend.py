"""A simulated generator: no model, a known landscape, and a GPU-like latency model.

For fast tests of the orchestration, for benchmarks that measure izray's scaling apart from
this machine's CPUs, and for operators' dry runs against the black-box simulator
(:mod:`izray.testing.simulator`).

It reads the exemplars in the prompt text, works out which simple operation they show
(the simulator's keyword operations: plural, first letter, larger number, ...), and writes
an instruction whose quality depends on the soft prompt: a fixed random linear feature of the
soft embeddings picks one instruction from a ladder running from one that names the right
operation to ones that name a wrong one or none. So BO has a real, learnable landscape.

With ``landscape="hard"`` (``generator.model: sim-hard``) it writes the instructions of
:mod:`izray.testing.landscape` instead: thousands of texts over the box, rare good regions,
per-example structure; the black-box simulator answers them with ``--landscape hard``. Requests without a soft prompt (APE) draw the features from
their sampling seed, as a random soft prompt would give them.

Latency follows a throughput model of one GPU engine generating a batch of ``b`` prompts:
``t(b) = overhead_s + max_new_tokens * (per_token_s + per_seq_token_s * b)``.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable

import numpy as np
import torch

from izray.generation.base import Generator, ModelInfo
from izray.testing import landscape

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
_LADDERS.update({
    "smaller": ["Write the smaller of the two numbers.", "Pick the smaller number.",
                "Write the numbers.", "Write the larger number."],
    "first item": ["Write the first item of the list.", "Name the first item.",
                   "Write the list.", "Write the last item of the list."],
    "reverse": ["Write the word backwards.", "Reverse the word.", "Write the word.",
                "Write the first letter of the word."],
    "add one": ["Add one to the number.", "Give the number plus one.", "Write the number.",
                "Write the number in words."],
})
_OPS = {
    "plural": lambda x: x + "s",
    "first letter": lambda x: x[:1].lower(),
    "larger": lambda x: max(re.findall(r"-?\d+", x), key=int) if re.findall(r"\d+", x) else "",
    "smaller": lambda x: min(re.findall(r"-?\d+", x), key=int) if re.findall(r"\d+", x) else "",
    "last": lambda x: x.split(",")[-1].strip(),
    "first item": lambda x: x.split(",")[0].strip() if "," in x else "",
    "reverse": lambda x: x.strip()[::-1],
    "add one": lambda x: str(int(x) + 1) if x.strip().isdigit() else "",
}
#: Box dimension and projection seed of the features of requests without a soft prompt.
_APE_DIM = 10
_APE_SEED = 7
#: ``generator.model`` of the simulated backend that selects the hard landscape.
HARD_MODEL = "sim-hard"


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
        seed: Seed of the fixed random features.
        landscape: ``classic`` (the instruction ladder) or ``hard``
            (:mod:`izray.testing.landscape`).
        sleep: ``time.sleep`` (injected in tests).
    """

    def __init__(self, *, hidden: int = 64, max_new_tokens: int = 64,
                 overhead_s: float = OVERHEAD_S, per_token_s: float = PER_TOKEN_S,
                 per_seq_token_s: float = PER_SEQ_TOKEN_S, seed: int = 0,
                 landscape: str = "classic",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.hidden = hidden
        self.max_new_tokens = max_new_tokens
        self.overhead_s = overhead_s
        self.per_token_s = per_token_s
        self.per_seq_token_s = per_seq_token_s
        self.sleep = sleep
        self.landscape = landscape
        self.busy_s = 0.0
        self.calls = 0
        self._rng = np.random.default_rng(seed)
        self._w: np.ndarray | None = None
        name = HARD_MODEL if landscape == "hard" else "sim"
        self.info = ModelInfo(model=name, backend="sim", hidden=hidden, embed_std=1.0)
        self.assembler = None

    def batch_latency(self, b: int) -> float:
        """Seconds one call with ``b`` prompts takes under the throughput model."""
        return self.overhead_s + self.max_new_tokens * (self.per_token_s + self.per_seq_token_s * b)

    def _linear(self, soft: np.ndarray | None, k: int, seed: int | None, text: str) -> np.ndarray:
        """``k`` fixed random linear features of the soft prompt, each ~N(0, 1) for random
        soft prompts. Without one (APE), the features of a random point of the box under a
        fixed projection of the same variance, drawn from the request's seed and text: in this
        simulation APE samples from the instructions random soft prompts give."""
        if soft is None:
            key = hashlib.sha256(f"{seed}|{text}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(key[:8], "little"))
            z = rng.uniform(-1.0, 1.0, _APE_DIM)
            b = np.random.default_rng(_APE_SEED).standard_normal((k, _APE_DIM))
            b *= np.sqrt(3.0) / np.linalg.norm(b, axis=1, keepdims=True)  # Var(b . z) = 1
            return b @ z
        flat = np.asarray(soft, dtype=np.float64).reshape(-1)
        if self._w is None or self._w.shape != (k, flat.shape[0]):
            self._w = self._rng.standard_normal((k, flat.shape[0])) / np.sqrt(flat.shape[0])
        return self._w @ flat

    def instruction_for(self, soft: np.ndarray | None, text: str, seed: int | None = None) -> str:
        """The instruction this soft prompt and exemplar text produce (deterministic)."""
        op = detect_operation(text)
        if self.landscape == "hard":
            return landscape.text(op, landscape.cells(self._linear(soft, 4, seed, text)))
        ladder = _LADDERS.get(op, _GENERIC) if op else _GENERIC
        u, v, w = 1.0 / (1.0 + np.exp(-2.0 * self._linear(soft, 3, seed, text)))
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
        return [GenerationResult(r.key, self.instruction_for(r.soft, r.text, r.seed), "")
                for r in requests]

    def _generate_embeds(self, embeds: list[torch.Tensor],
                         sampling: list[tuple[float, int | None]]) -> list[str]:  # pragma: no cover
        raise NotImplementedError("the simulated generator works on requests directly")
