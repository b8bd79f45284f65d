"""The seam between ``@idempotent`` (and the HTTP middleware) and where records live.

Each method is one atomic transition of :mod:`resilience.idempotency.record`
(one lock hold in memory, one transaction in SQLite, one Lua script in
Redis).  ``now`` is the caller's clock reading; a store with its own clock
(SQLite's wall clock, Redis ``TIME``) may use that instead, as long as every
transition of one store reads the same clock.  The async twins exist so that
a remote store never blocks the event loop; a ``local`` store's sync methods
never block, and async callers may use them directly.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from resilience.idempotency.record import Claim, Record

__all__ = ["IdempotencyStore"]


@runtime_checkable
class IdempotencyStore(Protocol):
    """Something that holds idempotency records (memory, SQLite, Redis)."""

    @property
    def local(self) -> bool:
        """True when the sync methods never block, so async code may call them directly."""
        ...

    def begin(self, key: str, fingerprint: str, token: str, lease: float, now: float) -> Claim:
        """Take the lease on ``key`` if it is absent; otherwise replay, reused or in progress."""
        ...

    def renew(self, key: str, token: str, lease: float, now: float) -> bool:
        """Extend the lease ``token`` holds to ``now + lease``; False if it was lost."""
        ...

    def complete(self, key: str, token: str, result: bytes, ttl: float, now: float) -> bool:
        """Store ``result`` for ``ttl`` if ``token`` still holds the lease; False: refused."""
        ...

    def release(self, key: str, token: str, now: float) -> bool:
        """Drop the lease ``token`` holds (the key is absent again); False if it was lost."""
        ...

    def get(self, key: str, now: float) -> Record | None:
        """The live record for ``key``, or ``None``."""
        ...

    async def abegin(
        self, key: str, fingerprint: str, token: str, lease: float, now: float
    ) -> Claim: ...

    async def arenew(self, key: str, token: str, lease: float, now: float) -> bool: ...

    async def acomplete(
        self, key: str, token: str, result: bytes, ttl: float, now: float
    ) -> bool: ...

    async def arelease(self, key: str, token: str, now: float) -> bool: ...

    async def aget(self, key: str, now: float) -> Record | None: ...
