"""The answer a rate limiter gives."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Decision"]


class Decision(NamedTuple):
    """One rate-limiting decision.

    ``allowed``: whether the request was admitted (and its cost consumed).
    ``limit``: the configured requests per period.
    ``remaining``: unit-cost requests that would be admitted right now.
    ``retry_after``: 0.0 when allowed; otherwise the exact wait after which
    the same request, arriving alone, is admitted (``math.inf`` if its cost
    can never fit).  ``reset_after``: seconds until the key is back to full
    capacity.  ``delay``: for shaping algorithms, how long an admitted request
    must wait before it proceeds (0.0 for every other algorithm).

    A tuple underneath for speed, but truth-tests as ``allowed``, so
    ``if limiter.try_acquire(key):`` reads as it should.
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after: float
    reset_after: float
    delay: float = 0.0

    def __bool__(self) -> bool:
        return self.allowed
