"""The interface a rate limiter needs from a store.

A limiter asks its store once, at construction, for a *table*: the store's
state for that one algorithm.  The table answers ``decide(key, cost, now)``
atomically.  The memory store answers synchronously; a networked store (Redis)
answers ``adecide`` without blocking the event loop and may ignore ``now`` in
favour of the server's clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from resilience.ratelimit.algorithms.base import Algorithm
from resilience.ratelimit.decision import Decision

__all__ = ["LocalTable", "RateLimitStore", "RateLimitTable"]


@runtime_checkable
class RateLimitTable(Protocol):
    """One algorithm's per-key state inside a store."""

    def decide(self, key: str, cost: float, now: float) -> Decision:
        """Atomically apply one request; raise ``StoreError`` if the store cannot answer."""
        ...

    async def adecide(self, key: str, cost: float, now: float) -> Decision:
        """The same, without blocking the event loop."""
        ...

    def refund(self, key: str, cost: float, now: float) -> None:
        """Give back ``cost`` (a shaped waiter that was cancelled before it left)."""
        ...


@runtime_checkable
class LocalTable(RateLimitTable, Protocol):
    """A table whose state is a dict in this process, guarded by a lock.

    The limiter builds its ``try_acquire`` from these parts (one closure, no
    call into the table on the allowed path); ``decide`` must mean exactly:
    under ``lock``, ``step`` the state in ``data``, or ``insert`` a new key.
    """

    @property
    def lock(self) -> threading.Lock: ...

    @property
    def data(self) -> dict[str, Any]: ...

    @property
    def step(self) -> Callable[[Any, float, float], tuple[Any, Decision]]: ...

    def insert(self, key: str, cost: float, now: float) -> Decision:
        """Decide for a key absent from ``data``; called with ``lock`` held."""
        ...


@runtime_checkable
class RateLimitStore(Protocol):
    """Something that can hold per-key state for rate-limiting algorithms."""

    def table(self, algorithm: Algorithm, now: Callable[[], float], name: str) -> RateLimitTable:
        """A fresh namespace for ``algorithm``; ``now`` is the limiter's clock."""
        ...
