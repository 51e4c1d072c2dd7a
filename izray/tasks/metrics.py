"""Scoring a model's prediction against a task's accepted answers.

The metrics and the normalisation follow the Instruction Induction experiments (Honovich et al.,
2022) as reused by InstructZero. Both the prediction and every answer go through
:func:`normalize` before comparison, and an example's score is the best score over its accepted
answers (:func:`score`).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence

from izray.errors import TaskError

__all__ = [
    "METRICS",
    "TASK_METRICS",
    "contains",
    "exact_match",
    "exact_set",
    "f1",
    "get_metric",
    "metric_for_task",
    "normalize",
    "score",
]

# The "Sentence 1:" / "Sentence 2:" markers that the two-sentence tasks (cause_and_effect,
# sentence_similarity, word_in_context) put in their inputs. The reference scorer removes them so
# that a model echoing "Sentence 2: The child cried." still matches "The child cried.".
_SENTENCE_MARKER = re.compile(r"sentence\s*[12]\s*:", re.IGNORECASE)
_ASCII_PUNCTUATION = frozenset(string.punctuation)


def _is_punctuation(char: str) -> bool:
    return char in _ASCII_PUNCTUATION or unicodedata.category(char).startswith("P")


def _is_dash(char: str) -> bool:
    return char == "-" or unicodedata.category(char) == "Pd"


def normalize(text: str) -> str:
    """Normalise a prediction or an answer before comparing them.

    The steps, in order: remove "Sentence 1:"/"Sentence 2:" markers (as the reference scorer
    does); strip surrounding white space; keep the first line; keep the text before the first
    "."; lower-case; replace "-" (and other Unicode dashes) by a space; drop punctuation (ASCII
    ``string.punctuation`` and Unicode punctuation); collapse runs of white space into one space
    and strip.

    Args:
        text: Any text.

    Returns:
        The normalised text, possibly empty.

    Examples:
        >>> normalize("  The Well-Known answer. Extra sentence")
        'the well known answer'
        >>> normalize("Sentence 2: It rained!")
        'it rained'
    """
    text = _SENTENCE_MARKER.sub(" ", text).strip()
    lines = text.splitlines()
    text = lines[0] if lines else ""
    text = text.split(".", 1)[0].lower()
    text = "".join(" " if _is_dash(c) else c for c in text)
    text = "".join(c for c in text if not _is_punctuation(c))
    return " ".join(text.split())


def exact_match(prediction: str, answer: str) -> float:
    """1.0 if the normalised prediction equals the normalised answer, else 0.0."""
    return float(normalize(prediction) == normalize(answer))


def contains(prediction: str, answer: str) -> float:
    """1.0 if the normalised answer occurs in the normalised prediction as whole words.

    The answer must start and end on word boundaries of the prediction ("rest" is found in "to
    rest now" but not in "restless"). An empty normalised answer only matches an empty
    prediction.
    """
    pred, ans = normalize(prediction), normalize(answer)
    if not ans:
        return float(not pred)
    return float(re.search(rf"(?<!\w){re.escape(ans)}(?!\w)", pred) is not None)


def f1(prediction: str, answer: str) -> float:
    """Token F1 between the normalised prediction and answer (SQuAD style).

    Tokens are the white-space separated words after :func:`normalize`, counted with
    multiplicity. If either side has no tokens the score is 1.0 when both are empty, else 0.0.
    """
    pred_tokens, ans_tokens = normalize(prediction).split(), normalize(answer).split()
    if not pred_tokens or not ans_tokens:
        return float(pred_tokens == ans_tokens)
    n_common = sum((Counter(pred_tokens) & Counter(ans_tokens)).values())
    if n_common == 0:
        return 0.0
    precision = n_common / len(pred_tokens)
    recall = n_common / len(ans_tokens)
    return 2 * precision * recall / (precision + recall)


def _word_set(text: str) -> frozenset[str]:
    return frozenset(normalize(text).split()) - {"and"}


def exact_set(prediction: str, answer: str) -> float:
    """1.0 if the prediction and the answer have the same set of normalised words.

    Order, repetition, punctuation and the word "and" are ignored, so "a, b and c" scores 1.0
    against "c, b, a".
    """
    return float(_word_set(prediction) == _word_set(answer))


METRICS: dict[str, Callable[[str, str], float]] = {
    "exact_match": exact_match,
    "contains": contains,
    "f1": f1,
    "exact_set": exact_set,
}
"""Metric name -> function ``(prediction, answer) -> float`` in [0, 1] for one answer."""

TASK_METRICS: dict[str, str] = {
    "active_to_passive": "exact_match",
    "antonyms": "exact_match",
    "cause_and_effect": "exact_match",
    "common_concept": "f1",
    "diff": "exact_match",
    "first_word_letter": "exact_match",
    "informal_to_formal": "f1",
    "larger_animal": "exact_match",
    "letters_list": "exact_match",
    "negation": "exact_match",
    "num_to_verbal": "exact_match",
    "orthography_starts_with": "exact_set",
    "rhymes": "exact_match",
    "second_word_letter": "exact_match",
    "sentence_similarity": "exact_match",
    "sentiment": "exact_match",
    "singular_to_plural": "exact_match",
    "sum": "exact_match",
    "synonyms": "contains",
    "taxonomy_animal": "exact_set",
    "translation_en-de": "exact_match",
    "translation_en-es": "exact_match",
    "translation_en-fr": "exact_match",
    "word_in_context": "exact_match",
}
"""The metric of each of the 24 Instruction Induction tasks, as in the paper's experiments."""

DEFAULT_METRIC = "exact_match"


def metric_for_task(name: str) -> str:
    """The default metric of a task: its entry in :data:`TASK_METRICS`, else ``exact_match``."""
    return TASK_METRICS.get(name, DEFAULT_METRIC)


def get_metric(name: str) -> Callable[[str, str], float]:
    """Look up a metric function by name.

    Args:
        name: A key of :data:`METRICS`.

    Returns:
        The function ``(prediction, answer) -> float``.

    Raises:
        TaskError: If ``name`` is not a known metric.
    """
    try:
        return METRICS[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(METRICS))
        raise TaskError(f"unknown metric {name!r} (choose one of: {valid})") from None


def score(metric: str, prediction: str, answers: Sequence[str]) -> float:
    """Score a prediction: the best score of ``metric`` over the accepted answers.

    Args:
        metric: A metric name (a key of :data:`METRICS`).
        prediction: The model's raw output.
        answers: The accepted answers (an :class:`~izray.tasks.base.Example`'s ``answers``).

    Returns:
        A float in [0, 1].

    Raises:
        TaskError: If the metric is unknown or ``answers`` is empty.
    """
    fn = get_metric(metric)
    if isinstance(answers, str):
        answers = (answers,)
    if not answers:
        raise TaskError(
            "cannot score a prediction against no answers (give at least one)"
        )
    return max(fn(prediction, answer) for answer in answers)
