"""resilience-patterns: resilience patterns for Python services.

The core (this package) is pure logic plus thin sync/async drivers and
imports no web framework and no Redis client.  Adapters (``resilience.asgi``,
``resilience.aiohttp``, ``resilience.redis``, ``resilience.prometheus``) live
in a separate source folder and join this package through ``extend_path``.
"""

import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)

from resilience.clock import SYSTEM_CLOCK, Clock, SleepingClock, SystemClock
from resilience.errors import (
    BulkheadFull,
    CircuitOpen,
    InvalidKey,
    RateLimited,
    ResilienceError,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from resilience.events import EventBus, default_bus
from resilience.policy import Policy
from resilience.ratelimit import (
    GCRA,
    Algorithm,
    Decision,
    FixedWindow,
    LeakyBucket,
    RateLimiter,
    RateLimitPolicy,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
    parse_policy,
    parse_rate,
    rate_limit,
)
from resilience.stores import MemoryStore

__version__ = "0.1.0"

__all__ = [
    "GCRA",
    "SYSTEM_CLOCK",
    "Algorithm",
    "BulkheadFull",
    "CircuitOpen",
    "Clock",
    "Decision",
    "EventBus",
    "FixedWindow",
    "InvalidKey",
    "LeakyBucket",
    "MemoryStore",
    "Policy",
    "RateLimitPolicy",
    "RateLimited",
    "RateLimiter",
    "ResilienceError",
    "SleepingClock",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "SystemClock",
    "TokenBucket",
    "__version__",
    "default_bus",
    "parse_policy",
    "parse_rate",
    "rate_limit",
]
