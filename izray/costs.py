"""Cost and caps: what a run spends, and whether the next piece of work still fits.

Cost is computed from billed tokens and the ``prices`` table (USD per million prompt and
completion tokens, per model). Caps (``caps.task.*``, ``caps.run.*``) are ceilings, checked
*before* work is admitted: a candidate is only issued if what is already spent, plus what
the work in flight is expected to spend, plus what this candidate is expected to spend, stays
within every cap. The expected spend of one dev evaluation is 1.25 times the largest one
observed so far in the task, and never less than an upper estimate of its prompt tokens from
prompt lengths and the instruction token limit (before the first evaluation: that estimate,
with ``evaluator.max_tokens`` per answer). Caps hold as long as no evaluation costs more than
its estimate; one that does (many retries, far longer answers) can cross a cap by the
difference.

Example:
    >>> from izray.config import Caps
    >>> need = Usage(calls=20, prompt_tokens=800, completion_tokens=100)
    >>> cap_exceeded(Caps(api_calls=50), Usage(calls=40), 2, need, 1, None, "task")
    'caps.task.api_calls=50 reached (40 spent, the next query needs ~20)'
    >>> cap_exceeded(Caps(api_calls=60), Usage(calls=40), 2, need, 1, None, "task") is None
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from izray.config import Caps, Price
from izray.evaluation.ledger import Usage

#: Margin on the largest evaluation seen, for the ones not yet seen (longer instructions,
#: longer answers): with it a cap is only crossed by an evaluation 25% dearer than any before.
ESTIMATE_MARGIN = 1.25
#: Characters per token assumed when estimating prompt tokens before any call was answered.
#: English BPE tokenizers average ~4; 3 errs towards over-estimating (a cap is a ceiling).
CHARS_PER_TOKEN_ESTIMATE = 3


def cost_usd(prices: Mapping[str, Price], model: str | None, usage: Usage) -> float | None:
    """USD for ``usage`` at ``model``'s price, or ``None`` if the price table lacks it."""
    price = prices.get(model or "")
    if price is None:
        return None
    return (usage.prompt_tokens * price.prompt + usage.completion_tokens * price.completion) / 1e6


def total(usages: Iterable[Usage]) -> Usage:
    """Field-wise sum."""
    out = Usage()
    for u in usages:
        out.add(u)
    return out


def scaled(usage: Usage, k: float) -> Usage:
    """``usage`` times ``k`` (rounded up: estimates err high)."""
    return Usage(_ceil(usage.calls * k), _ceil(usage.prompt_tokens * k),
                 _ceil(usage.completion_tokens * k))


def largest(a: Usage | None, b: Usage) -> Usage:
    """Field-wise maximum (``a`` may be ``None``)."""
    if a is None:
        return Usage(b.calls, b.prompt_tokens, b.completion_tokens)
    return Usage(max(a.calls, b.calls), max(a.prompt_tokens, b.prompt_tokens),
                 max(a.completion_tokens, b.completion_tokens))


def per_query_estimate(prior: Usage, seen: Usage | None, n_dev: int) -> Usage:
    """Expected spend of the next dev evaluation.

    Args:
        prior: :func:`prior_estimate` for the task (its completion part is a hard bound).
        seen: Field-wise largest evaluation seen so far, or ``None``.
        n_dev: Dev examples (calls without retries).

    Returns:
        Before any was seen: ``prior``. After: calls ``max(n_dev, seen)``, prompt tokens
        ``max(prior, margin * seen)``, completion tokens ``margin * seen``.
    """
    if seen is None:
        return prior
    return Usage(max(n_dev, seen.calls),
                 max(prior.prompt_tokens, _ceil(seen.prompt_tokens * ESTIMATE_MARGIN)),
                 _ceil(seen.completion_tokens * ESTIMATE_MARGIN))


def prior_estimate(prompt_chars: Iterable[int], instruction_tokens: int,
                   answer_tokens: int) -> Usage:
    """Upper estimate of one evaluation before any of its calls was answered.

    Args:
        prompt_chars: Length of each prompt with an empty instruction (one per example).
        instruction_tokens: Most tokens an instruction can have (the generator's limit).
        answer_tokens: Most tokens an answer can have (``evaluator.max_tokens``).
    """
    chars = list(prompt_chars)
    prompt = sum(_ceil(c / CHARS_PER_TOKEN_ESTIMATE) for c in chars)
    return Usage(len(chars), prompt + len(chars) * instruction_tokens,
                 len(chars) * answer_tokens)


def cap_exceeded(caps: Caps, spent: Usage, queries: int, need: Usage, need_queries: int,
                 usd_of, scope: str, what: str = "the next query") -> str | None:
    """The cap that ``need`` more would cross, as a message, or ``None`` if it fits.

    Args:
        caps: The caps to check.
        spent: Calls and tokens spent (and committed to work in flight) in this scope.
        queries: Candidates evaluated (and in flight) in this scope.
        need: What the new work is expected to spend.
        need_queries: Candidates the new work adds (0 for a test evaluation).
        usd_of: ``Usage -> float | None`` (``None``: no price known; a USD cap can't apply).
        scope: ``"task"`` or ``"run"``, for the message.
        what: Names the new work in the message.
    """
    after = total((spent, need))
    usd_spent = usd_of(spent) if usd_of else None
    usd_after = usd_of(after) if usd_of else None
    checks = (("queries", caps.queries, queries, queries + need_queries),
              ("api_calls", caps.api_calls, spent.calls, after.calls),
              ("prompt_tokens", caps.prompt_tokens, spent.prompt_tokens, after.prompt_tokens),
              ("completion_tokens", caps.completion_tokens, spent.completion_tokens,
               after.completion_tokens),
              ("usd", caps.usd, usd_spent, usd_after))
    for name, cap, now, then in checks:
        if cap is None or now is None or then is None or then <= cap:
            continue
        if name == "queries" and need_queries == 0:
            continue
        if isinstance(now, float):
            return (f"caps.{scope}.{name}={cap:g} reached ({now:.4f} spent, {what} needs "
                    f"~{then - now:.4f})")
        return f"caps.{scope}.{name}={cap:g} reached ({now} spent, {what} needs ~{then - now})"
    return None


def any_caps(*caps: Caps) -> bool:
    """True if any cap in ``caps`` is set."""
    return any(getattr(c, f) is not None for c in caps
               for f in ("queries", "api_calls", "prompt_tokens", "completion_tokens", "usd"))


def _ceil(x: float) -> int:
    return int(-(-x // 1))
