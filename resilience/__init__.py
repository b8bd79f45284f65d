"""resilience-patterns: resilience patterns for Python services.

The core (this package) is pure logic plus thin sync/async drivers and
imports no web framework and no Redis client.  Adapters (``resilience.asgi``,
``resilience.aiohttp``, ``resilience.redis``, ``resilience.prometheus``) live
in a separate source folder and join this package through ``extend_path``.
"""

import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)

from resilience.breaker import (
    BreakerSnapshot,
    BreakerStore,
    CircuitBreaker,
    CircuitState,
    CountWindow,
    MemoryBreakerStore,
    TimeWindow,
)
from resilience.bulkhead import AdaptiveBulkhead, Bulkhead
from resilience.claimcheck import (
    ClaimCheck,
    Envelope,
    FileBlobStore,
    MemoryBlobStore,
    PayloadCorrupt,
    PayloadMissing,
    TicketExpired,
    TicketInvalid,
)
from resilience.clock import SYSTEM_CLOCK, Clock, SleepingClock, SystemClock
from resilience.composition import Composition, compose
from resilience.errors import (
    BulkheadFull,
    CircuitOpen,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    InvalidKey,
    RateLimited,
    ResilienceError,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from resilience.events import EventBus, default_bus
from resilience.fallbacks import Fallback, fallback
from resilience.idempotency import (
    IdempotencyStore,
    Idempotent,
    MemoryIdempotencyStore,
    idempotent,
)
from resilience.idempotency.sqlite import SQLiteIdempotencyStore
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
from resilience.ratelimit.memory_store import MemoryStore
from resilience.retrying import Backoff, Retry, RetryBudget, retry
from resilience.timeouts import Timeout, timeout

__version__ = "0.1.0"

__all__ = [
    "BreakerSnapshot",
    "BreakerStore",
    "CircuitBreaker",
    "CircuitState",
    "ClaimCheck",
    "Envelope",
    "FileBlobStore",
    "MemoryBlobStore",
    "PayloadCorrupt",
    "PayloadMissing",
    "TicketExpired",
    "TicketInvalid",
    "CountWindow",
    "MemoryBreakerStore",
    "TimeWindow",
    "AdaptiveBulkhead",
    "Algorithm",
    "Backoff",
    "Bulkhead",
    "BulkheadFull",
    "CircuitOpen",
    "Clock",
    "Composition",
    "Decision",
    "EventBus",
    "Fallback",
    "FixedWindow",
    "GCRA",
    "IdempotencyInProgress",
    "IdempotencyKeyReused",
    "IdempotencyStore",
    "Idempotent",
    "InvalidKey",
    "LeakyBucket",
    "MemoryIdempotencyStore",
    "MemoryStore",
    "Policy",
    "RateLimitPolicy",
    "RateLimited",
    "RateLimiter",
    "ResilienceError",
    "Retry",
    "RetryBudget",
    "SQLiteIdempotencyStore",
    "SYSTEM_CLOCK",
    "SleepingClock",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "SystemClock",
    "Timeout",
    "TokenBucket",
    "__version__",
    "compose",
    "default_bus",
    "fallback",
    "idempotent",
    "parse_policy",
    "parse_rate",
    "rate_limit",
    "retry",
    "timeout",
]
