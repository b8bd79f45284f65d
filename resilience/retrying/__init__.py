"""Retry with backoff and jitter, Retry-After and a shared retry budget, on tenacity."""

from resilience.retrying.backoff import Backoff, Jitter
from resilience.retrying.budget import RetryBudget
from resilience.retrying.retry import NEVER_RETRIED, Retry, retry
from resilience.retrying.retry_after import parse_retry_after, retry_after_of

__all__ = [
    "NEVER_RETRIED",
    "Backoff",
    "Jitter",
    "Retry",
    "RetryBudget",
    "parse_retry_after",
    "retry",
    "retry_after_of",
]
