"""The ``sim-hard`` landscape: a simulated generator/black-box pair that tells optimizers apart.

The classic simulated pair (a ladder of a few instructions, keyword answers) is too easy: every
strategy reaches the best instruction. This landscape is shaped like the real problem:

* **Many instructions, many-to-one.** An instruction is a task phrase followed by three
  modifier phrases, ``"Write the plural form of the noun. Be exact. Check twice. Plain
  text."``: 6 task phrases x 8^3 modifiers = 3,072 texts. The generator picks each of the four
  slots by thresholding one fixed random linear feature ``t_j`` of the soft prompt, so the box
  is cut into cells (neighbouring soft prompts share an instruction) by slabs.
* **Rare good cells.** The cells of each slot have unequal widths (normal quantiles with
  probabilities ``CELL_P``): the extreme cells are hit by 3% of random soft prompts.
* **Structure a model can learn.** A modifier's effect on quality rises towards one extreme
  of its slot (a random side per slot and task), with noise, so scores trend along the
  features; the best instructions sit where several features are extreme at once. Two of
  the six task phrases name no operation: the black box then only echoes the input (score 0).
* **Per-example scores that share structure.** The black box answers example ``i`` correctly
  iff ``q + s . e_i + eps > 0``: ``q`` the instruction's quality (sum of its phrases'
  effects), ``s`` the sum of its phrases' latent vectors, ``e_i`` the example's latent vector
  (from its input text), ``eps`` per (instruction, example) noise. Instructions with similar
  phrases fail on the same examples.

Everything is deterministic: phrase effects are drawn per task operation from a seeded RNG,
example vectors and noise from SHA-256 digests. :func:`measure` reports the landscape's
properties (``benchmarks/README.md`` records them).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cache

import numpy as np

#: Probability of each cell of a modifier slot under random soft prompts (normal quantiles):
#: the extreme cells are rare.
CELL_P = (0.03, 0.07, 0.13, 0.27, 0.27, 0.13, 0.07, 0.03)
#: Task-phrase cells: four that name the task's operation, two that do not.
TASK_CELL_P = (0.15, 0.2, 0.2, 0.15, 0.15, 0.15)
#: Latent dimension of examples and phrases.
LATENT = 4
#: Std of a modifier's latent vector components: how much instructions differ in *which*
#: examples they get right.
LATENT_SCALE = 0.15
#: Std of the per-(instruction, example) noise.
NOISE = 0.5
#: Half-range of a modifier slot's quality ramp, and the noise on it.
RAMP = 0.8
RAMP_NOISE = 0.1
#: Share of random soft prompts in the top region, and the margin (in noise stds) there.
TOP_SHARE = 0.005
TOP_MARGIN = 1.4
#: Seed of the phrase effects (with the operation's name).
LANDSCAPE_SEED = 20261201

MODIFIERS: tuple[tuple[str, ...], ...] = (
    ("Be brief.", "Be precise.", "Answer directly.", "Keep it short.", "Be exact.",
     "No explanation.", "Stay literal.", "One answer only."),
    ("Think first.", "Be careful.", "Check twice.", "Stay calm.", "Work slowly.",
     "Trust the pattern.", "Ignore noise.", "Focus."),
    ("Plain text.", "No quotes.", "Single line.", "Exact form.", "Same format.",
     "Copy the style.", "Match the examples.", "Mind the spelling."),
)
GENERIC = ("Answer the question.", "Respond to the input.")

#: Per operation (the simulator's keyword): four phrasings that name it.
TASK_PHRASES: dict[str, tuple[str, ...]] = {
    "plural": ("Write the plural form of the noun.", "Give the plural.",
               "Turn the word into its plural.", "Make the noun plural."),
    "first letter": ("Write the first letter of the word.", "Give the first letter.",
                     "Name the first letter.", "Output the word's first letter."),
    "larger": ("Write the larger of the two numbers.", "Pick the larger number.",
               "Give the larger value.", "Choose the larger one."),
    "smaller": ("Write the smaller of the two numbers.", "Pick the smaller number.",
                "Give the smaller value.", "Choose the smaller one."),
    "last": ("Write the last item of the list.", "Name the last item.",
             "Give the last element.", "Output the last entry."),
    "first item": ("Write the first item of the list.", "Name the first item.",
                   "Give the first element.", "Output the first entry."),
    "reverse": ("Write the word backwards.", "Reverse the word.",
                "Spell the word in reverse.", "Give the word reversed."),
    "add one": ("Add one to the number.", "Give the number plus one.",
                "Increment the number.", "Write the number after it."),
}


def _digest_int(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8],
                          "little")


def _cuts(probs: tuple[float, ...]) -> np.ndarray:
    """Thresholds on a standard-normal feature that give cells of these probabilities."""
    from statistics import NormalDist

    acc = np.cumsum(probs)[:-1]
    return np.array([NormalDist().inv_cdf(float(p)) for p in acc])


_CUTS = _cuts(CELL_P)
_TASK_CUTS = _cuts(TASK_CELL_P)


@dataclass(frozen=True)
class Effects:
    """One operation's phrase effects.

    Attributes:
        task_q: Quality of each task phrase (``-inf`` for the generic ones).
        q: ``3 x 8`` quality of each modifier.
        v: ``3 x 8 x LATENT`` latent vectors of the modifiers.
        bias: Quality offset of the operation.
    """

    task_q: np.ndarray
    q: np.ndarray
    v: np.ndarray
    bias: float


@cache
def effects(op: str) -> Effects:
    """The phrase effects of operation ``op`` (deterministic).

    Each modifier slot's quality ramps from one extreme cell to the other (random side), plus
    noise. The offset ``bias`` is calibrated so that only the top ``TOP_SHARE`` of random soft
    prompts have a mean margin of ``TOP_MARGIN`` noise standard deviations (a score near 1):
    that top region is what random search at a full budget finds only sometimes.
    """
    rng = np.random.default_rng([LANDSCAPE_SEED, _digest_int(op)])
    ramp = np.linspace(-1.0, 1.0, len(CELL_P))
    q = np.stack([RAMP * (1.0 if rng.random() < 0.5 else -1.0) * ramp
                  + RAMP_NOISE * rng.standard_normal(len(CELL_P)) for _ in MODIFIERS])
    task_q = np.r_[np.array([0.3, 0.15, 0.0, -0.15]) + 0.05 * rng.standard_normal(4),
                   -math.inf, -math.inf]
    v = LATENT_SCALE * rng.standard_normal((len(MODIFIERS), len(CELL_P), LATENT))
    draws = [cells(t) for t in np.random.default_rng(LANDSCAPE_SEED).standard_normal((20000, 4))]
    raw = np.array([task_q[d[0]] + sum(q[j, k] for j, k in enumerate(d[1:])) for d in draws])
    sd = math.sqrt(NOISE**2 + len(MODIFIERS) * LATENT * LATENT_SCALE**2)
    bias = TOP_MARGIN * sd - float(np.quantile(raw, 1.0 - TOP_SHARE))
    return Effects(task_q, q, v, bias=bias)


def cells(t: np.ndarray) -> tuple[int, ...]:
    """The four slot indices of features ``t`` (``4``: task phrase, then three modifiers)."""
    return (int(np.searchsorted(_TASK_CUTS, t[0])),
            *(int(np.searchsorted(_CUTS, x)) for x in t[1:]))


def text(op: str | None, idx: tuple[int, ...]) -> str:
    """The instruction of slot indices ``idx`` for operation ``op`` (None: no operation)."""
    phrases = TASK_PHRASES.get(op or "", ())
    head = phrases[idx[0]] if idx[0] < len(phrases) else GENERIC[(idx[0] - 4) % 2]
    return " ".join([head, *(MODIFIERS[j][k] for j, k in enumerate(idx[1:]))])


def parse(instruction: str) -> tuple[str, tuple[int, ...]] | None:
    """``(op, slot indices)`` of a landscape instruction, or None if it is not one."""
    for op, phrases in TASK_PHRASES.items():
        for k, phrase in enumerate(phrases):
            if instruction.startswith(phrase):
                rest = instruction[len(phrase):]
                mods = _parse_modifiers(rest)
                return (op, (k, *mods)) if mods is not None else None
    return None


def _parse_modifiers(rest: str) -> tuple[int, ...] | None:
    out = []
    for slot in MODIFIERS:
        hit = [k for k, p in enumerate(slot) if p in rest]
        if len(hit) != 1:
            return None
        out.append(hit[0])
    return tuple(out)


def _example_vector(input_text: str) -> np.ndarray:
    return np.random.default_rng(_digest_int("example", input_text)).standard_normal(LATENT)


def margin(op: str, idx: tuple[int, ...], input_text: str) -> float:
    """``q + s . e + eps`` of one example (correct iff > 0)."""
    e = effects(op)
    q = e.bias + e.task_q[idx[0]] + sum(e.q[j, k] for j, k in enumerate(idx[1:]))
    s = sum(e.v[j, k] for j, k in enumerate(idx[1:]))
    eps = NOISE * np.random.default_rng(
        _digest_int("noise", op, idx, input_text)).standard_normal()
    return float(q + s @ _example_vector(input_text) + eps)


def correct(instruction: str, input_text: str) -> bool | None:
    """Whether the black box answers correctly; None if ``instruction`` is not a landscape one."""
    parsed = parse(instruction)
    if parsed is None:
        return None
    op, idx = parsed
    return margin(op, idx, input_text) > 0


def true_score(op: str, idx: tuple[int, ...], inputs: list[str]) -> float:
    """Mean correctness over ``inputs`` (0 for a task phrase naming no operation)."""
    if idx[0] >= 4:
        return 0.0
    return float(np.mean([margin(op, idx, x) > 0 for x in inputs]))


def measure(op: str, inputs: list[str], n_points: int = 1000, seed: int = 0) -> dict:
    """Properties of the landscape of ``op`` over standard-normal features (random soft prompts).

    Returns:
        ``distinct`` instructions among ``n_points`` draws, the ``best`` true score over all
        3,072 instructions, the share of draws within 0.05 of it (``near_best_share``), the
        mean score of a draw, and ``p_find_150``, the chance that 150 random draws hit the
        near-best region.
    """
    import itertools

    grid = list(itertools.product(range(len(TASK_CELL_P)), *(range(len(CELL_P)),) * 3))
    table = {idx: true_score(op, idx, inputs) for idx in grid}
    best = max(table.values())
    rng = np.random.default_rng(seed)
    draws = [cells(t) for t in rng.standard_normal((n_points, 4))]
    near = float(np.mean([table[d] >= best - 0.05 for d in draws]))
    return {"op": op, "distinct": len(set(draws)), "best": best, "near_best_share": near,
            "mean": float(np.mean([table[d] for d in draws])),
            "p_find_150": 1.0 - (1.0 - near) ** 150}
