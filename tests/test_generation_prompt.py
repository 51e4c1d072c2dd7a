"""Exemplar block assembly and instruction clean-up."""

from __future__ import annotations

import pytest

from izray.generation.prompt import clean_instruction, induction_text
from izray.tasks import Example


def test_induction_text_layout():
    ex = [Example("a", ("1",)), Example("b", ("2", "two"))]
    assert induction_text(ex, "The instruction was to") == (
        "Input: a\nOutput: 1\n\nInput: b\nOutput: 2\n\nThe instruction was to")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (" write the first letter of the word.\n\nInput: x", "Write the first letter of the word."),
        ("\n\n  add the numbers.", "Add the numbers."),
        (' "reverse the list."', "Reverse the list."),
        (" The instruction was to  sort   the words. Output: a", "Sort the words."),
        ("", ""),
        ("\n\n\n", ""),
        (": give the antonym", "Give the antonym"),
    ],
)
def test_clean_instruction(raw, clean):
    assert clean_instruction(raw) == clean


def test_long_instructions_cut_at_word_boundary():
    out = clean_instruction("word " * 200, max_chars=50)
    assert len(out) <= 50 and not out.endswith(" ") and out.startswith("Word")
