"""Cost and caps: what a run spends, and when to stop spending.

Cost is computed from billed tokens and the ``prices`` table (USD per million prompt and
completion tokens, per model). Caps (``caps.task.*``, ``caps.run.*``) are checked before any
new black-box work starts; work already in flight finishes, so a cap can be overshot by at
most the calls in flight when it was reached (bounded by the tasks' in-flight candidates
times ``tasks.n_dev``).
"""

from __future__ import annotations

from collections.abc import Mapping

from izray.config import Caps, Price
from izray.evaluation.ledger import Usage


def cost_usd(prices: Mapping[str, Price], model: str | None, usage: Usage) -> float | None:
    """USD for ``usage`` at ``model``'s price, or ``None`` if the price table lacks it."""
    price = prices.get(model or "")
    if price is None:
        return None
    return (usage.prompt_tokens * price.prompt + usage.completion_tokens * price.completion) / 1e6


def cap_reached(caps: Caps, usage: Usage, queries: int, usd: float | None,
                scope: str) -> str | None:
    """Why ``caps`` stop further work, or ``None``.

    Args:
        caps: The caps to check.
        usage: Calls and tokens spent so far in this scope.
        queries: Candidates evaluated so far in this scope.
        usd: Cost so far (``None`` if unknown: a USD cap then cannot be checked).
        scope: ``"task"`` or ``"run"``, for the message.
    """
    checks = (("queries", caps.queries, queries), ("api_calls", caps.api_calls, usage.calls),
              ("prompt_tokens", caps.prompt_tokens, usage.prompt_tokens),
              ("completion_tokens", caps.completion_tokens, usage.completion_tokens),
              ("usd", caps.usd, usd))
    for name, cap, value in checks:
        if cap is not None and value is not None and value >= cap:
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            return f"caps.{scope}.{name}={cap:g} reached ({shown})"
    return None
