"""What the rate-limit tests import again and again, in one place.

Every algorithm class, the limiter, ``EventBus`` (tests give each limiter its
own bus, so global sinks never see test traffic) and the ``Algorithm`` base
for type hints.  ``from tests.ratelimit_kit import ...`` replaces the same
ten-line import block in the rate-limit test modules.
"""

from __future__ import annotations

from resilience import (
    GCRA,
    FixedWindow,
    LeakyBucket,
    RateLimiter,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from resilience.events import EventBus
from resilience.ratelimit.algorithms.base import Algorithm

__all__ = [
    "GCRA",
    "Algorithm",
    "EventBus",
    "FixedWindow",
    "LeakyBucket",
    "RateLimiter",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "TokenBucket",
]
