"""Text around the soft prompt: the exemplar block the generator reads, and clean-up of
what it writes.

The generator sees ``<bos> [soft tokens] Input: x1\\nOutput: y1\\n\\n ... The instruction was to``
and continues the last sentence; :func:`clean_instruction` turns that continuation into one
instruction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from izray.tasks import Example

#: Longest instruction kept (characters); longer generations are cut at a word boundary.
MAX_INSTRUCTION_CHARS = 300
#: Stop strings for the generator: a blank line or a new exemplar ends the instruction.
GENERATION_STOP = ("\n\n", "Input:", "Output:")


def induction_text(exemplars: Sequence[Example], cue: str) -> str:
    """The exemplar block plus the induction cue.

    Args:
        exemplars: Input/output pairs; each shows its canonical answer ``answers[0]``.
        cue: Sentence start the model completes, e.g. ``"The instruction was to"``.

    Returns:
        ``"Input: x\\nOutput: y\\n\\n...\\n\\n<cue>"``.
    """
    demos = "\n\n".join(f"Input: {ex.input}\nOutput: {ex.answers[0]}" for ex in exemplars)
    return f"{demos}\n\n{cue}"


def clean_instruction(generated: str, max_chars: int = MAX_INSTRUCTION_CHARS) -> str:
    """One clean instruction from the generator's raw continuation.

    Keeps the first non-empty line, drops a leading "The instruction was to" echo, wrapping
    quotes and trailing exemplar fragments, collapses whitespace, capitalises the first letter
    and cuts at ``max_chars`` on a word boundary. May return ``""`` for an empty generation.

    Example:
        >>> clean_instruction(' "write the first letter of each word."\\nInput: x')
        'Write the first letter of each word.'
    """
    lines = [ln.strip() for ln in generated.replace("\r", "\n").split("\n")]
    text = next((ln for ln in lines if ln), "")
    for marker in ("Input:", "Output:"):
        idx = text.find(marker)
        if idx != -1:
            text = text[:idx]
    text = re.sub(r"^(the instruction was to)\s*", "", text.strip(), flags=re.IGNORECASE)
    text = re.sub(r"\s+", " ", text).strip()
    text = text.strip("\"'`“”‘’ ").strip()
    text = text.lstrip(":-–—,; ").strip()
    if len(text) > max_chars:
        cut = text[:max_chars]
        text = cut[: cut.rfind(" ")] if " " in cut else cut
    if text:
        text = text[0].upper() + text[1:]
    return text
