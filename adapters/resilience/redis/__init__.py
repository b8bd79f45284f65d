"""Redis (and Valkey) as the distributed rate-limiting engine.

``RedisStore(client)`` gives every ``RateLimiter`` that uses it state shared
by all processes and hosts talking to the same Redis: each decision is one
atomic Lua script (one ``EVALSHA`` round trip) with the same semantics as
the in-memory store, bit for bit.  The same store shares circuit-breaker
state (``CircuitBreaker(name, store=RedisStore(...))``), and
``RedisIdempotencyStore`` keeps idempotency records.  See ``docs/redis.md``.
"""

from resilience.redis.blobs import RedisBlobStore
from resilience.redis.breaker import RedisBreakerStore
from resilience.redis.idempotency import RedisIdempotencyStore
from resilience.redis.store import RedisStore
from resilience.redis.table import RedisTable

__all__ = [
    "RedisBlobStore",
    "RedisBreakerStore",
    "RedisIdempotencyStore",
    "RedisStore",
    "RedisTable",
]
