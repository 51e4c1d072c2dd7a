"""How an instruction becomes black-box prompts, with defaults per endpoint kind.

InstructZero runs the instruction zero-shot: ``Instruction: {instruction}\\n\\nInput: {x}\\nOutput:``.
Chat models follow that as is. *Base* models (the embedded small model, or any endpoint used
through the completions API) only continue text: zero-shot they score 0 on every task, they
repeat the prompt. A fixed primer of a few unrelated instruction/input/output examples ahead
of the prompt makes a base model answer, and its score then depends on the instruction,
which is what the optimizer needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from izray.config import EvaluatorConfig

#: Primer for base models: unrelated tasks, each input shown under two instructions with
#: different answers, so the model learns that the instruction decides the answer. (Measured
#: on the embedded 270M model, larger_number dev accuracy: 0.25 with the right instruction,
#: 0.00-0.05 with wrong ones; with one input per instruction every instruction scored 0.)
BASE_MODEL_PRIMER = "".join(
    f"Instruction: {i}\n\nInput: {x}\nOutput: {y}\n\n"
    for i, x, y in (
        ("Write the word in capital letters.", "river", "RIVER"),
        ("Write the word backwards.", "river", "revir"),
        ("Count the letters in the word.", "river", "5"),
        ("Add one to the number.", "41", "42"),
        ("Double the number.", "41", "82"),
        ("Write the number in words.", "41", "forty-one"),
    )
)

#: The template's fields, substituted in one pass (a value may contain the other's name).
_FIELD = re.compile(r"\{(instruction|input)\}")


@dataclass(frozen=True)
class PromptTemplate:
    """Renders black-box prompts.

    Attributes:
        template: Text with ``{instruction}`` and ``{input}``.
        primer: Fixed text put before every prompt (may be empty).
    """

    template: str
    primer: str = ""

    def render(self, instruction: str, input_text: str) -> str:
        """One prompt (one substitution pass, so braces in data are safe)."""
        values = {"instruction": instruction, "input": input_text}
        body = _FIELD.sub(lambda m: values[m.group(1)], self.template)
        return self.primer + body


def resolve_api(cfg: EvaluatorConfig) -> str:
    """``completions`` for the embedded base model, ``chat`` for other endpoints, unless set."""
    if cfg.api != "auto":
        return cfg.api
    return "completions" if cfg.embedded else "chat"


def template_for(cfg: EvaluatorConfig) -> PromptTemplate:
    """The template with the primer the endpoint kind needs (``evaluator.primer`` overrides)."""
    primer = cfg.primer
    if primer is None:
        primer = BASE_MODEL_PRIMER if resolve_api(cfg) == "completions" else ""
    return PromptTemplate(cfg.template, primer)
