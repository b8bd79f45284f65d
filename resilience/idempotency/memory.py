"""``MemoryIdempotencyStore``: records in a dict, for one process.

Volatile by design: a restart forgets every record (so a retry after a
restart runs again), and two processes never see each other's records.  Use
it for tests and single-worker services; :class:`SQLiteIdempotencyStore`
survives restarts and is shared by the processes of one host.

Bounded: at most ``max_keys`` records.  A new key first reclaims expired
records; if none can go, the completed record that was stored first is
dropped (its key would run again on a retry: size ``max_keys`` above the
keys one ``ttl`` sees).  A running record is never dropped: when every
record is running, a new key raises :class:`~resilience.errors.StoreFull`.

Why not ``cachetools.TTLCache`` (DESIGN.md names it for age-based eviction):
when full it evicts the least recently used entry whatever it holds, and a
running record must never go (its key would run a second time while the
first owner still runs).  Two dicts keep that rule at dict speed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from resilience import _validate
from resilience.errors import StoreFull
from resilience.idempotency import record as machine
from resilience.idempotency.record import Claim, Record

__all__ = ["MemoryIdempotencyStore"]

_RECLAIM_PER_BEGIN = 2


class MemoryIdempotencyStore:
    """Idempotency records in process memory (bounded, thread-safe, forgotten on restart)."""

    __slots__ = ("_done", "_lock", "_running", "max_keys")

    local = True

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = _validate.whole_number(max_keys, "max_keys")
        self._lock = threading.Lock()
        # Completed records in completion order (oldest first), running ones apart:
        # eviction takes from the front of _done and never touches _running.  An
        # OrderedDict: a plain dict's first entry after many deletions at the front
        # is found by scanning past their dummies, O(n) per eviction.
        self._done: OrderedDict[str, Record] = OrderedDict()
        self._running: dict[str, Record] = {}

    def __len__(self) -> int:
        return len(self._done) + len(self._running)

    def _find(self, key: str) -> Record | None:
        found = self._running.get(key)
        return found if found is not None else self._done.get(key)

    def _forget(self, key: str) -> None:
        self._running.pop(key, None)
        self._done.pop(key, None)

    def _reclaim(self, now: float, budget: int) -> None:
        """Drop up to ``budget`` expired records from the front of the completed ones."""
        done = self._done
        while budget and done:
            key = next(iter(done))
            if now < done[key].expires:
                return
            done.popitem(last=False)
            budget -= 1

    def _make_room(self, now: float) -> None:
        self._reclaim(now, _RECLAIM_PER_BEGIN)
        if len(self) < self.max_keys:
            return
        expired = [k for k, r in self._running.items() if now >= r.expires]
        for key in expired:  # dead owners' leases: nothing to keep
            del self._running[key]
        if len(self) < self.max_keys:
            return
        if self._done:
            self._done.popitem(last=False)
            return
        soonest = min(r.expires for r in self._running.values())
        raise StoreFull(
            f"MemoryIdempotencyStore holds {self.max_keys} running records (max_keys)",
            max(0.0, soonest - now),
        )

    def begin(self, key: str, fingerprint: str, token: str, lease: float, now: float) -> Claim:
        with self._lock:
            found = self._find(key)
            claim, new = machine.begin(found, now, fingerprint, token, lease)
            if new is not None:
                if found is not None:
                    self._forget(key)
                else:
                    self._make_room(now)
                self._running[key] = new
            return claim

    def renew(self, key: str, token: str, lease: float, now: float) -> bool:
        with self._lock:
            new = machine.renew(self._running.get(key), now, token, lease)
            if new is None:
                return False
            self._running[key] = new
            return True

    def complete(self, key: str, token: str, result: bytes, ttl: float, now: float) -> bool:
        with self._lock:
            new = machine.complete(self._running.get(key), now, token, result, ttl)
            if new is None:
                return False
            del self._running[key]
            self._done[key] = new
            return True

    def release(self, key: str, token: str, now: float) -> bool:
        with self._lock:
            if not machine.release(self._running.get(key), now, token):
                return False
            del self._running[key]
            return True

    def get(self, key: str, now: float) -> Record | None:
        with self._lock:
            return machine.live(self._find(key), now)

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._done.clear()
            self._running.clear()

    async def abegin(
        self, key: str, fingerprint: str, token: str, lease: float, now: float
    ) -> Claim:
        return self.begin(key, fingerprint, token, lease, now)

    async def arenew(self, key: str, token: str, lease: float, now: float) -> bool:
        return self.renew(key, token, lease, now)

    async def acomplete(self, key: str, token: str, result: bytes, ttl: float, now: float) -> bool:
        return self.complete(key, token, result, ttl, now)

    async def arelease(self, key: str, token: str, now: float) -> bool:
        return self.release(key, token, now)

    async def aget(self, key: str, now: float) -> Record | None:
        return self.get(key, now)

    def __repr__(self) -> str:
        return f"MemoryIdempotencyStore(max_keys={self.max_keys}, records={len(self)})"
