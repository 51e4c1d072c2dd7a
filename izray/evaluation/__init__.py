"""Evaluation: instruction -> black-box prompts -> answers -> per-example scores."""

from izray.evaluation.cache import CachedAnswer, ResponseCache, cache_key, endpoint_settings
from izray.evaluation.client import BlackBoxClient, CallResult
from izray.evaluation.evaluator import CallOutcome, Evaluator
from izray.evaluation.ratelimit import RateLimiter, estimate_tokens
from izray.evaluation.templates import PromptTemplate, resolve_api, template_for

__all__ = [
    "BlackBoxClient",
    "CachedAnswer",
    "CallOutcome",
    "CallResult",
    "Evaluator",
    "PromptTemplate",
    "RateLimiter",
    "ResponseCache",
    "cache_key",
    "endpoint_settings",
    "estimate_tokens",
    "resolve_api",
    "template_for",
]
