"""Tests of izray.tasks.metrics: normalisation, the four metrics and score()."""

from __future__ import annotations

import pytest

from izray.errors import TaskError
from izray.tasks import ALL_24, METRICS, TASK_METRICS, metric_for_task
from izray.tasks.metrics import (
    contains,
    exact_match,
    exact_set,
    f1,
    get_metric,
    normalize,
    score,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("insane", "insane"),
        ("Insane.", "insane"),  # trailing period
        (
            "  The Well-Known answer. Extra sentence",
            "the well known answer",
        ),  # hyphen, period
        ("self-esteem", "self esteem"),
        ("5 - perfectly", "5 perfectly"),  # hyphen between spaces, whitespace collapsed
        ("First line\nsecond line", "first line"),
        ("\n\n  answer\nmore", "answer"),  # leading blank lines are stripped first
        ("Hello,   World!", "hello world"),
        ("Sentence 1: It started raining.", "it started raining"),
        ("Sentence 2: The child cried. Sentence 1: x", "the child cried"),
        ("sentence 1 without colon", "sentence 1 without colon"),
        ("¿Qué tal?", "qué tal"),  # Unicode punctuation
        ("it's — fine", "its fine"),  # apostrophe dropped, Unicode dash -> space
        ("3.5", "3"),  # the reference keeps only the text before the first "."
        ("", ""),
        ("...", ""),
    ],
)
def test_normalize_worked_examples(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_normalize_is_idempotent() -> None:
    for text in ["The Well-Known answer. x", "Sentence 1: A b-c!", "  a\tb  \n c"]:
        once = normalize(text)
        assert normalize(once) == once


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("insane", "insane", 1.0),
        ("Insane.", "insane", 1.0),
        ("  INSANE  ", "insane", 1.0),
        ("insane person", "insane", 0.0),
        ("5 - perfectly", "5 perfectly", 1.0),
        ("well-known", "well known", 1.0),
        ("The power was out.\nBecause ...", "The power was out for days.", 0.0),
        ("Sentence 2: The power was out for days.", "The power was out for days.", 1.0),
        ("", "", 1.0),
        ("", "x", 0.0),
    ],
)
def test_exact_match(prediction: str, answer: str, expected: float) -> None:
    assert exact_match(prediction, answer) == expected


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("I need to rest now.", "rest", 1.0),
        ("Rest", "rest", 1.0),
        ("restless", "rest", 0.0),  # word boundary at the end
        ("unrest", "rest", 0.0),  # word boundary at the start
        ("a big dog here", "big dog", 1.0),
        ("a bigdog here", "big dog", 0.0),
        ("a well-known fact", "well known", 1.0),
        ("use (parens) [x]", "(parens)", 1.0),  # regex metacharacters are escaped
        ("aaa", "a*", 0.0),  # "a*" would match as a regex; normalised it is "a"
        ("x", "", 0.0),
        ("", "", 1.0),
    ],
)
def test_contains(prediction: str, answer: str, expected: float) -> None:
    assert contains(prediction, answer) == expected


def test_f1_worked_examples() -> None:
    assert f1("the cat sat", "the cat") == pytest.approx(0.8)  # p=2/3, r=1
    assert f1("The cat.", "the cat") == 1.0
    assert f1("a a a", "a") == pytest.approx(0.5)  # multiplicity counts: p=1/3, r=1
    assert f1("involve tumbling", "involve oscillations.") == pytest.approx(0.5)
    assert f1("dog", "cat") == 0.0
    assert f1("", "") == 1.0
    assert f1("x", "") == 0.0
    assert f1("", "x") == 0.0


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("a, b and c", "a, b, c", 1.0),  # "and" is ignored
        ("c, b, a", "a, b and c", 1.0),
        ("Chicken, spider, tortoise.", "tortoise, chicken, spider", 1.0),
        ("chicken, chicken, spider", "spider, chicken", 1.0),  # repetition ignored
        ("a, b", "a, b, c", 0.0),
        ("a, b, c, d", "a, b, c", 0.0),
        ("thinks that", "that thinks", 1.0),
    ],
)
def test_exact_set(prediction: str, answer: str, expected: float) -> None:
    assert exact_set(prediction, answer) == expected


def test_score_takes_the_best_answer() -> None:
    assert score("exact_match", "hola", ["hora", "hola"]) == 1.0
    assert score("exact_match", "adios", ["hora", "hola"]) == 0.0
    assert score("f1", "the cat sat", ["dog", "the cat", "the cat sat"]) == 1.0
    assert score("f1", "the cat sat", ["dog", "the cat"]) == pytest.approx(0.8)
    assert score("contains", "it is big", ("large", "big")) == 1.0
    assert score("exact_set", "b and a", ("a, c", "a, b")) == 1.0


def test_score_accepts_a_single_string_answer() -> None:
    assert score("exact_match", "Yes.", "yes") == 1.0
    assert score("exact_match", "yes", "no") == 0.0


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_score_is_in_unit_interval(metric: str) -> None:
    predictions = ["", "a", "the cat sat on the mat", "A-b. c", "Sentence 1: x"]
    answers = ["a", "the cat", "b a", "x"]
    values = [score(metric, p, answers) for p in predictions]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert max(values) == 1.0  # every metric gives some prediction here full marks


def test_score_rejects_empty_answers() -> None:
    with pytest.raises(TaskError, match="no answers") as info:
        score("exact_match", "x", [])
    assert "\n" not in str(info.value)


def test_unknown_metric_lists_valid_names() -> None:
    with pytest.raises(TaskError) as info:
        score("accuracy", "x", ["x"])
    message = str(info.value)
    assert "'accuracy'" in message
    for name in METRICS:
        assert name in message
    assert "\n" not in message
    with pytest.raises(TaskError, match="unknown metric"):
        get_metric("bleu")


def test_get_metric_returns_the_function() -> None:
    assert get_metric("f1") is f1
    assert get_metric("contains") is contains


def test_task_metrics_cover_the_24_tasks() -> None:
    assert set(TASK_METRICS) == set(ALL_24)
    assert set(TASK_METRICS.values()) <= set(METRICS)
    by_metric = {m: {t for t, tm in TASK_METRICS.items() if tm == m} for m in METRICS}
    assert by_metric["f1"] == {"common_concept", "informal_to_formal"}
    assert by_metric["exact_set"] == {"orthography_starts_with", "taxonomy_animal"}
    assert by_metric["contains"] == {"synonyms"}
    assert len(by_metric["exact_match"]) == 19


def test_metric_for_task_defaults_to_exact_match() -> None:
    assert metric_for_task("synonyms") == "contains"
    assert metric_for_task("my_custom_task") == "exact_match"
