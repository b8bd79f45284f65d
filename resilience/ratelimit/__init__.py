"""Rate limiting: six algorithms, a limiter, a decorator and rate strings."""

from resilience.ratelimit.algorithms import (
    GCRA,
    Algorithm,
    FixedWindow,
    LeakyBucket,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from resilience.ratelimit.decision import Decision
from resilience.ratelimit.decorator import RateLimitPolicy, rate_limit
from resilience.ratelimit.limiter import RateLimiter
from resilience.ratelimit.rate import parse_rate
from resilience.ratelimit.spec import parse_policy

__all__ = [
    "GCRA",
    "Algorithm",
    "Decision",
    "FixedWindow",
    "LeakyBucket",
    "RateLimitPolicy",
    "RateLimiter",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "TokenBucket",
    "parse_policy",
    "parse_rate",
    "rate_limit",
]
