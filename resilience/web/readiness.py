"""Refuse, when a middleware is built, a policy whose store cannot answer on the event loop.

The middlewares decide with the async entry points (``atry_acquire``,
``apermit``).  A store that has only a blocking client (a ``RedisStore`` given
a sync ``redis.Redis``) raises ``TypeError`` there, which would be a 500 on
every request instead of one clear error at startup.  A store says so with
``supports_async = False``; stores without the attribute (memory) can.
"""

from __future__ import annotations

from resilience.breaker import CircuitBreaker
from resilience.ratelimit.limiter import RateLimiter

__all__ = ["require_async", "require_async_breaker"]

ADVICE = (
    "and the middleware decides on the event loop; pass a redis.asyncio client as "
    "async_client (or build the store with RedisStore.from_url)"
)


def _sync_only(store: object) -> bool:
    return getattr(store, "supports_async", True) is False


def require_async(limiter: RateLimiter, field: str = "limiter") -> None:
    """Raise ``ValueError`` naming ``field`` if the limiter (or its fallback) is sync-only."""
    checked: list[RateLimiter] = []
    current: RateLimiter | None = limiter
    while current is not None and current not in checked:
        checked.append(current)
        store = current.store
        if _sync_only(store):
            where = field if current is limiter else f"{field}'s fallback"
            raise ValueError(
                f"{where} {current.name!r}: its {type(store).__name__} has only a sync client, "
                + ADVICE
            )
        current = current.fallback


def require_async_breaker(breaker: CircuitBreaker) -> None:
    """Raise ``ValueError`` if the breaker's shared state can be reached only synchronously."""
    store = breaker.store
    if _sync_only(store):
        raise ValueError(
            f"breaker {breaker.name!r}: its {type(store).__name__} has only a sync client, "
            + ADVICE
        )
