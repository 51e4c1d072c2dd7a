"""Tests of izray.evaluation.templates: rendering and per-endpoint defaults."""

from __future__ import annotations

import pytest

from izray.config import EvaluatorConfig
from izray.evaluation.templates import (
    BASE_MODEL_PRIMER,
    PromptTemplate,
    resolve_api,
    template_for,
)
from izray.testing.simulator import parse_prompt

DEFAULT = EvaluatorConfig().template
REMOTE = {"base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini"}


def test_render_default_template() -> None:
    t = PromptTemplate(DEFAULT)
    assert t.render("Write the plural.", "cat") == (
        "Instruction: Write the plural.\n\nInput: cat\nOutput:")


@pytest.mark.parametrize(("instruction", "input_text"), [
    ("Format as {name}: {value}", "{'a': 1, 'b': {2}}"),
    ("Use {} and {0} and {{x}}", "}{"),
    ("Repeat the {input} verbatim", "cat"),  # the other field's name inside the data
    ("Copy it", "say {instruction} now"),
    ("\\1 \\g<0> backslashes", "C:\\path\\n"),  # no regex replacement escapes either
])
def test_braces_and_field_names_in_the_data_are_kept_verbatim(instruction: str,
                                                              input_text: str) -> None:
    out = PromptTemplate(DEFAULT).render(instruction, input_text)
    assert out == f"Instruction: {instruction}\n\nInput: {input_text}\nOutput:"


def test_template_fields_can_repeat_and_reorder() -> None:
    t = PromptTemplate("Q: {input}\nTask: {instruction}\nAgain: {input}\n{other}")
    assert t.render("I", "X") == "Q: X\nTask: I\nAgain: X\n{other}"


def test_primer_is_prepended() -> None:
    t = PromptTemplate(DEFAULT, primer="P\n\n")
    assert t.render("i", "x") == "P\n\nInstruction: i\n\nInput: x\nOutput:"


def test_the_simulator_reads_the_last_instruction_after_the_primer() -> None:
    prompt = PromptTemplate(DEFAULT, BASE_MODEL_PRIMER).render("Write the plural.", "cat")
    assert prompt.startswith(BASE_MODEL_PRIMER)
    assert parse_prompt(prompt) == ("Write the plural.", "cat")


# -------------------------------------------------------------------- per endpoint kind


def test_primer_is_fixed_text_of_examples_in_the_template_format() -> None:
    assert BASE_MODEL_PRIMER.count("Instruction: ") == 6
    assert BASE_MODEL_PRIMER.count("Output: ") == 6
    assert BASE_MODEL_PRIMER.endswith("\n\n")


def test_embedded_default_is_completions_with_the_primer() -> None:
    cfg = EvaluatorConfig()
    assert cfg.embedded
    assert resolve_api(cfg) == "completions"
    t = template_for(cfg)
    assert t.primer == BASE_MODEL_PRIMER
    assert t.template == cfg.template


def test_remote_default_is_chat_without_primer() -> None:
    cfg = EvaluatorConfig(**REMOTE)
    assert not cfg.embedded
    assert resolve_api(cfg) == "chat"
    assert template_for(cfg).primer == ""


def test_remote_completions_gets_the_primer() -> None:
    cfg = EvaluatorConfig(**REMOTE, api="completions")
    assert resolve_api(cfg) == "completions"
    assert template_for(cfg).primer == BASE_MODEL_PRIMER


def test_embedded_chat_has_no_primer() -> None:
    cfg = EvaluatorConfig(api="chat")
    assert resolve_api(cfg) == "chat"
    assert template_for(cfg).primer == ""


@pytest.mark.parametrize("kind", [{}, REMOTE, {**REMOTE, "api": "completions"}])
def test_explicit_primer_wins(kind: dict) -> None:
    assert template_for(EvaluatorConfig(**kind, primer="")).primer == ""
    assert template_for(EvaluatorConfig(**kind, primer="Examples:\n")).primer == "Examples:\n"


def test_custom_template_is_used() -> None:
    cfg = EvaluatorConfig(**REMOTE, template="{instruction}\n>>> {input}\n<<<")
    assert template_for(cfg).render("Add one.", "41") == "Add one.\n>>> 41\n<<<"
