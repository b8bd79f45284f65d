"""The embedded default store: bounded, thread-safe, in process.

Per-key state lives in plain dicts, one per limiter, under one lock.  The
bound (``max_keys``, across every limiter sharing the store) is enforced
without ever forgiving a client: a key is reclaimed only once its state is
back to full (``algorithm.full_at(state) <= now``), which is exactly when
forgetting it changes no future decision.  Reclamation is incremental: each
new key pays for checking two old ones from a snapshot of the table, so idle
keys disappear at the rate new ones arrive, and ``sweep()`` reclaims
everything on demand.  When the bound is reached and no key can be reclaimed,
a new key raises :class:`~resilience.errors.StoreFull` and the limiter applies
its ``on_store_error`` policy; live state is never dropped.

Why not ``cachetools.TLRUCache``: its per-item expiry is what we want, but
measured here a get plus set costs 1,570 ns (a dict: 33 ns) and an entry
218 bytes (a dict entry: 38), each alone over DESIGN.md section 5's budget
(600 ns per decision, 150 B per idle key), and its LRU eviction would drop
hot keys.  The dict-plus-``full_at`` scheme keeps the guarantee at dict speed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from resilience import _validate
from resilience.errors import InvalidKey, StoreFull
from resilience.ratelimit.algorithms.base import INF, Algorithm
from resilience.ratelimit.decision import Decision

__all__ = ["MemoryStore", "MemoryTable"]

_CHECKS_PER_INSERT = 2
_MIN_SCAN_BATCH = 256


class MemoryTable:
    """One limiter's keys in a :class:`MemoryStore`.

    Besides the :class:`~resilience.ratelimit.store.RateLimitTable` methods it
    exposes its parts (:attr:`lock`, :attr:`data`, :attr:`step`, :meth:`insert`:
    the :class:`~resilience.ratelimit.store.LocalTable` protocol), so that the
    limiter can inline a decision into its own ``try_acquire`` closure.  The
    table knows nothing of events or limiter policies.
    """

    __slots__ = (
        "_algorithm",
        "_data",
        "_full_at",
        "_inserts",
        "_lock",
        "_now",
        "_scan",
        "_scan_pos",
        "_step",
        "_store",
        "decide",
        "name",
    )

    def __init__(
        self, store: MemoryStore, algorithm: Algorithm, now: Callable[[], float], name: str
    ) -> None:
        self._store = store
        self._algorithm = algorithm
        self._step = algorithm.decide
        self._full_at = algorithm.full_at
        self._now = now
        self._lock = store._lock
        self._data: dict[str, Any] = {}
        self._scan: list[str] | None = None
        self._scan_pos = 0
        self._inserts = 0
        self.name = name
        self.decide: Callable[[str, float, float], Decision] = self._bind_decide()

    def _bind_decide(self) -> Callable[[str, float, float], Decision]:
        """The hot path as a closure: locals instead of attribute lookups."""
        # lock.acquire()/release() are ~100 ns cheaper than `with lock:` on CPython 3.11
        # (Lock.__enter__/__exit__ parse their arguments); try/finally is free.
        acquire = self._lock.acquire
        release = self._lock.release
        data = self._data
        get = data.get
        step = self._step
        insert = self.insert

        def decide(key: str, cost: float, now: float) -> Decision:
            """Atomically apply one request to ``key``'s state."""
            acquire()
            try:
                state = get(key)
                if state is None:
                    return insert(key, cost, now)
                new, decision = step(state, now, cost)
                if new is not state:
                    data[key] = new
                return decision
            finally:
                release()

        return decide

    @property
    def lock(self) -> threading.Lock:
        """The store's lock: hold it around every read and write of :attr:`data`."""
        return self._lock

    @property
    def data(self) -> dict[str, Any]:
        """Per-key state; a missing key is full (never seen, or reclaimed)."""
        return self._data

    @property
    def step(self) -> Callable[[Any, float, float], tuple[Any, Decision]]:
        """The algorithm's pure ``decide(state, now, cost) -> (state, Decision)``."""
        return self._step

    def __len__(self) -> int:
        return len(self._data)

    async def adecide(self, key: str, cost: float, now: float) -> Decision:
        return self.decide(key, cost, now)

    def insert(self, key: str, cost: float, now: float) -> Decision:
        """Decide for a key not in :attr:`data` (call under :attr:`lock`).

        Validates the key, makes room within ``max_keys`` (or raises
        :class:`~resilience.errors.StoreFull`) and stores the new state.
        """
        store = self._store
        if type(key) is not str:
            raise InvalidKey(f"rate-limit key must be a str, got {type(key).__name__}")
        if len(key) > store.max_key_length:
            raise InvalidKey(
                f"rate-limit key is {len(key)} characters; the store accepts {store.max_key_length}"
            )
        if store._count >= store.max_keys:
            store._make_room(now, self)
        new, decision = self._step(None, now, cost)
        if new is not None:
            self._data[key] = new
            store._count += 1
            full_at = self._full_at(new)
            if full_at < store._next_reclaim_at:
                store._next_reclaim_at = full_at
            self._after_insert(now)
        return decision

    def _after_insert(self, now: float) -> None:
        """Check a couple of old keys per new key, so idle ones are reclaimed as we go."""
        scan = self._scan
        if scan is None:
            self._inserts += 1
            if self._inserts < max(_MIN_SCAN_BATCH, len(self._data) >> 1):
                return
            self._inserts = 0
            scan = self._scan = list(self._data)
            self._scan_pos = 0
        pos = self._scan_pos
        data = self._data
        full_at = self._full_at
        for _ in range(_CHECKS_PER_INSERT):
            if pos >= len(scan):
                self._scan = None
                break
            key = scan[pos]
            pos += 1
            state = data.get(key)
            if state is not None and full_at(state) <= now:
                del data[key]
                self._store._count -= 1
        self._scan_pos = pos

    def _sweep(self, now: float) -> tuple[int, float]:
        """Reclaim every full key; return (reclaimed, earliest time another one will be)."""
        data = self._data
        full_at = self._full_at
        settle = self._algorithm.settle
        reclaimed = 0
        earliest = INF
        for key, state in list(data.items()):
            # A clock that stepped back: judge (and keep) the state as the next decision
            # would see it, so keys stop waiting out the step to be reclaimed.
            settled = settle(state, now)
            if settled is not state:
                data[key] = state = settled
            at = full_at(state)
            if at <= now:
                del data[key]
                reclaimed += 1
            elif at < earliest:
                earliest = at
        self._store._count -= reclaimed
        return reclaimed, earliest

    def refund(self, key: str, cost: float, now: float) -> None:
        refund = getattr(self._algorithm, "refund", None)
        if refund is None:
            return
        with self._lock:
            state = self._data.get(key)
            if state is None:
                return
            new = refund(state, now, cost)
            if new is None:
                del self._data[key]
                self._store._count -= 1
            else:
                self._data[key] = new
            self._store._next_reclaim_at = -INF

    def peek(self, key: str) -> Any:
        """The raw state of ``key`` (``None`` when full or unknown); for tests and tools."""
        with self._lock:
            return self._data.get(key)


class MemoryStore:
    """Bounded in-process state for every limiter that shares it.

    ``max_keys`` bounds the keys of all tables together.  ``max_key_length``
    rejects absurd keys with :class:`~resilience.errors.InvalidKey`.
    """

    def __init__(self, max_keys: int = 100_000, *, max_key_length: int = 1024) -> None:
        self.max_keys = _validate.whole_number(max_keys, "max_keys")
        self.max_key_length = _validate.whole_number(max_key_length, "max_key_length")
        self._lock = threading.Lock()
        self._tables: list[MemoryTable] = []
        self._count = 0
        self._next_reclaim_at = -INF

    def table(self, algorithm: Algorithm, now: Callable[[], float], name: str = "") -> MemoryTable:
        table = MemoryTable(self, algorithm, now, name)
        with self._lock:
            self._tables.append(table)
        return table

    def __len__(self) -> int:
        return self._count

    def sweep(self) -> int:
        """Reclaim every key that is back to full, in every table; return how many."""
        with self._lock:
            total = 0
            earliest = INF
            for table in self._tables:
                got, at = table._sweep(table._now())
                total += got
                earliest = min(earliest, at)
            self._next_reclaim_at = earliest  # every key left is full no earlier than this
            return total

    def _make_room(self, now: float, asking: MemoryTable) -> None:
        """Called under the lock when full: reclaim, or refuse the new key."""
        ahead = self._next_reclaim_at - now
        if ahead > 0 and ahead <= self._horizon():  # else the clock stepped back: sweep
            raise StoreFull(self._full_message(), ahead)
        reclaimed = 0
        earliest = INF
        for table in self._tables:
            got, at = table._sweep(now if table is asking else table._now())
            reclaimed += got
            earliest = min(earliest, at)
        # Every key left is full no earlier than `earliest`; keys inserted from now on
        # lower the bound as they arrive (see insert), so while it lies ahead the
        # store can refuse at once instead of sweeping max_keys entries again.
        self._next_reclaim_at = earliest
        if reclaimed:
            return
        raise StoreFull(self._full_message(), earliest - now)

    def _horizon(self) -> float:
        """How far ahead of now a key's full_at can lie on a forward clock, over all tables."""
        return max((table._algorithm.horizon for table in self._tables), default=0.0)

    def _full_message(self) -> str:
        return (
            f"memory store holds max_keys={self.max_keys} keys that are all still limited; "
            "refusing a new key rather than forgiving a live one"
        )

    def __repr__(self) -> str:
        return f"MemoryStore(max_keys={self.max_keys}, keys={self._count})"
