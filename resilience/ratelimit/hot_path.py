"""``RateLimiter.try_acquire``, built once per limiter as one closure.

This is the one place the limiter's non-blocking decision is written.  For a
:class:`~resilience.ratelimit.store.LocalTable` (the memory store) the table's
lock, dict and step are inlined into the closure: on CPython each Python call
level costs ~70 ns, about a tenth of the allowed path (DESIGN.md 5 budgets
600 ns for it all).  Any other table (Redis) is called through ``decide``.
The store knows nothing of events; rejections are reported from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from resilience.errors import InvalidKey, StoreError
from resilience.events import EventBus, RateLimitExceeded
from resilience.metrics import Tally
from resilience.ratelimit.algorithms.base import check_cost
from resilience.ratelimit.decision import Decision
from resilience.ratelimit.store import LocalTable, RateLimitTable

__all__ = ["TryAcquire", "bind_try_acquire"]


class TryAcquire(Protocol):
    """The signature of ``RateLimiter.try_acquire``."""

    def __call__(self, key: str = "global", cost: float = 1) -> Decision: ...


def bind_try_acquire(
    table: RateLimitTable,
    now: Callable[[], float],
    events: EventBus,
    rejected: Callable[[str, float, Decision], None],
    failed: Callable[[StoreError, str, float], Decision],
    tally: Tally,
) -> TryAcquire:
    """Decide now for ``key``; never blocks.  Consumes ``cost`` only when allowed.

    ``rejected`` reports a rejection (called only when ``events`` wants
    :class:`RateLimitExceeded`); ``failed`` turns a store error into the
    limiter's decision (``on_store_error``, fallback, ``on_store_full``), and counts
    it in ``tally`` itself.  ``tally`` counts every decision the table made (under
    the table lock for a local table, so exact with threads).
    ``events.wants`` is looked up per rejection: the bus replaces it when sinks change.
    """
    if not isinstance(table, LocalTable):
        decide = table.decide

        def try_acquire(key: str = "global", cost: float = 1) -> Decision:
            if cost.__class__ is not int or cost < 1:
                check_cost(cost)
            try:
                decision = decide(key, cost, now())
            except StoreError as exc:
                return failed(exc, key, cost)
            if decision[0]:
                tally.allowed += 1
                return decision
            tally.rejected += 1
            if events.wants(RateLimitExceeded):
                rejected(key, cost, decision)
            return decision

        return try_acquire

    # lock.acquire()/release() are ~100 ns cheaper than `with lock:` on CPython 3.11
    # (Lock.__enter__/__exit__ parse their arguments); try/finally is free.
    acquire = table.lock.acquire
    release = table.lock.release
    data = table.data
    get = data.get
    step = table.step
    insert = table.insert

    def try_acquire_local(key: str = "global", cost: float = 1) -> Decision:
        if cost.__class__ is not int or cost < 1:
            check_cost(cost)
        try:
            acquire()
            try:
                # The clock is read under the lock: decisions on this table then see
                # non-decreasing times, whichever thread gets there first.
                at = now()
                state = get(key)
                if state is None:
                    decision = insert(key, cost, at)
                else:
                    new, decision = step(state, at, cost)
                    if new is not state:
                        data[key] = new
                if decision[0]:
                    tally.allowed += 1
                    return decision  # (the finally releases the lock)
                tally.rejected += 1
            finally:
                release()
        except StoreError as exc:
            return failed(exc, key, cost)
        except TypeError:
            if type(key) is not str:  # unhashable: the dict lookup itself refused it
                raise InvalidKey(
                    f"rate-limit key must be a str, got {type(key).__name__}"
                ) from None
            raise
        if events.wants(RateLimitExceeded):
            rejected(key, cost, decision)
        return decision

    return try_acquire_local
