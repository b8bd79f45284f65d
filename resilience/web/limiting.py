"""The two things a web middleware needs from a ``RateLimiter`` beyond ``atry_acquire``.

``shape``: a shaping algorithm (``LeakyBucket(mode="shape")``) admits a
request with a ``delay``; the middleware holds the request that long, and a
client that disconnects meanwhile gets its slot back.  ``refund``: give an
admitted request's cost back (a response the operator chose not to count,
such as 401).  Both go through the limiter's table, which already does the
right thing per store: in memory it is a dict update, in Redis it is
scheduled on the asyncio client, so neither blocks the event loop.
"""

from __future__ import annotations

from resilience.ratelimit.limiter import RateLimiter

__all__ = ["refund", "shape", "supports_refund"]


def supports_refund(limiter: RateLimiter) -> bool:
    """Whether the limiter's algorithm can give cost back (the virtual-time family can).

    Window algorithms (fixed window, sliding log and counter) keep no record of
    which request consumed what, so they cannot undo one.
    """
    return callable(getattr(limiter.algorithm, "refund", None))


def refund(limiter: RateLimiter, key: str, cost: float) -> None:
    """Give ``cost`` back to ``key`` (best effort; never raises a store error)."""
    limiter.refund(key, cost)


async def shape(limiter: RateLimiter, key: str, cost: float, delay: float) -> None:
    """Wait out a shaped admission's ``delay`` on the limiter's clock; refund if cancelled."""
    await limiter.await_delay(key, cost, delay)
