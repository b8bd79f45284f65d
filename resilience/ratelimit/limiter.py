"""``RateLimiter``: an algorithm, a store and a clock, with sync and async entry points.

``try_acquire`` never blocks: it returns a :class:`Decision`.  ``acquire``
waits (on the injected clock) until the request is admitted or the wait
would exceed ``timeout``.  The waiting loop is written once, as steps, and
run by the shared sync or async driver; a waiter that is cancelled while
sleeping has consumed nothing (for shaping algorithms, its reserved slot is
given back).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Literal, ParamSpec, TypeVar

from resilience import _validate
from resilience.clock import Clock, now_function, resolve_clock
from resilience.errors import RateLimited, StoreError, StoreFull
from resilience.events import EventBus, RateLimitExceeded, StoreFailed, default_bus
from resilience.metrics import Tally
from resilience.policy import CALL, Policy, Steps, drive_async, drive_sync
from resilience.ratelimit.algorithms.base import Algorithm, check_cost, check_period
from resilience.ratelimit.decision import Decision, StoreFullDecision
from resilience.ratelimit.hot_path import TryAcquire, bind_try_acquire
from resilience.ratelimit.memory_store import MemoryStore
from resilience.ratelimit.store import LocalTable, RateLimitStore

__all__ = ["RateLimiter"]

P = ParamSpec("P")
R = TypeVar("R")

StoreErrorPolicy = Literal["fail_open", "fail_closed"]


class RateLimiter(Policy):
    """Admit or reject requests per key with one algorithm.

    ``store=None`` means a private :class:`MemoryStore`.  ``on_store_error``
    says what a decision is when the store cannot answer: ``"fail_open"``
    admits, ``"fail_closed"`` rejects with ``retry_after=store_error_retry_after``;
    a ``fallback`` limiter (typically in memory) decides instead when given.
    Every store failure is counted in ``store_errors`` and emitted as a
    :class:`~resilience.events.StoreFailed` event.

    A full :class:`MemoryStore` is capacity, not an outage: ``on_store_full``
    (default ``"reject"``) refuses a *new* key with ``retry_after`` set to when
    the first stored key can be reclaimed; ``"admit"`` lets it through
    unlimited.  Failing open here would let a client that picks its own keys
    fill the store and then pass without limit.
    """

    def __init__(
        self,
        algorithm: Algorithm,
        store: RateLimitStore | None = None,
        clock: Clock | None = None,
        name: str | None = None,
        on_store_error: StoreErrorPolicy = "fail_open",
        *,
        fallback: RateLimiter | None = None,
        store_error_retry_after: float = 1.0,
        on_store_full: Literal["reject", "admit"] = "reject",
        events: EventBus | None = None,
    ) -> None:
        if not isinstance(algorithm, Algorithm):
            raise ValueError(f"algorithm must be a rate-limiting Algorithm, got {algorithm!r}")
        _validate.one_of(on_store_error, "on_store_error", ("fail_open", "fail_closed"))
        _validate.one_of(on_store_full, "on_store_full", ("reject", "admit"))
        _validate.optional_non_empty_str(name, "name")
        self.algorithm = algorithm
        self.clock = resolve_clock(clock)
        self._now = now_function(self.clock)
        self.name = name or algorithm.spec()
        self.store: RateLimitStore = MemoryStore() if store is None else store
        self.on_store_error: StoreErrorPolicy = on_store_error
        self.on_store_full: Literal["reject", "admit"] = on_store_full
        self.fallback = fallback
        self.store_error_retry_after = check_period(
            store_error_retry_after, "store_error_retry_after"
        )
        self.store_errors = 0
        self.tally = Tally()
        """Decisions taken so far (allowed / rejected), read by metrics exporters."""
        self._events = default_bus if events is None else events
        self._table = self.store.table(algorithm, self._now, self.name)
        # A local table answers synchronously: calling it directly from atry_acquire
        # saves creating and awaiting a coroutine per decision (~200 ns).
        self._adecide = None if isinstance(self._table, LocalTable) else self._table.adecide
        self.in_process: bool = self._adecide is None
        """Whether decisions are made in this process (a memory store): ``try_acquire``
        then never waits on I/O, and async callers may call it directly."""
        self.try_acquire = bind_try_acquire(
            self._table,
            self._now,
            self._events,
            self._emit_rejected,
            self._store_failed,
            self.tally,
        )

    # -- non-blocking decisions -------------------------------------------------

    try_acquire: TryAcquire
    """``try_acquire(key="global", cost=1) -> Decision``: decide now; never blocks.

    Consumes ``cost`` only when allowed.  One closure per limiter, built by
    :func:`~resilience.ratelimit.hot_path.bind_try_acquire`.
    """

    async def atry_acquire(self, key: str = "global", cost: float = 1) -> Decision:
        """``try_acquire`` for async code; never blocks the event loop."""
        adecide = self._adecide
        if adecide is None:  # an in-process table: the same (fused) path as sync code
            return self.try_acquire(key, cost)
        if cost.__class__ is not int or cost < 1:
            check_cost(cost)
        try:
            decision = await adecide(key, cost, self._now())
        except StoreError as exc:
            fallback = self.fallback
            if fallback is not None and not isinstance(exc, StoreFull):
                self._count_store_error(exc, "fallback")
                return await fallback.atry_acquire(key, cost)
            return self._store_failed(exc, key, cost)  # StoreFull and the policies
        if decision[0]:
            self.tally.allowed += 1
            return decision
        self.tally.rejected += 1
        if self._events.wants(RateLimitExceeded):
            self._emit_rejected(key, cost, decision)
        return decision

    # -- waiting -----------------------------------------------------------------

    def acquire(
        self, key: str = "global", cost: float = 1, timeout: float | None = None
    ) -> Decision:
        """Wait until admitted; raise :class:`RateLimited` if that would exceed ``timeout``."""
        steps = self._acquire_steps(
            key, cost, _validate.optional_seconds(timeout, "timeout"), wait=True
        )
        return drive_sync(steps, self.clock, self.try_acquire, (key, cost))

    async def aacquire(
        self, key: str = "global", cost: float = 1, timeout: float | None = None
    ) -> Decision:
        """Async ``acquire``: a cancelled waiter consumes no quota."""
        steps = self._acquire_steps(
            key, cost, _validate.optional_seconds(timeout, "timeout"), wait=True
        )
        return await drive_async(steps, self.clock, self.atry_acquire, (key, cost))

    def acquire_steps(
        self, key: str = "global", cost: float = 1, timeout: float | None = None
    ) -> Steps[Decision]:
        """:meth:`acquire` as steps, for a policy that drives it with its own call.

        Yields :data:`~resilience.policy.CALL` where it needs a decision (send
        back ``try_acquire(key, cost)``, or ``atry_acquire``'s result) and
        seconds to sleep; returns the admitting decision or raises ``RateLimited``.
        """
        return self._acquire_steps(
            key, cost, _validate.optional_seconds(timeout, "timeout"), wait=True
        )

    def _acquire_steps(
        self, key: str, cost: float, timeout: float | None, *, wait: bool
    ) -> Steps[Decision]:
        """The one waiting loop: yields CALL for a decision, or seconds to sleep."""
        check_cost(cost)
        start = self._now()
        while True:
            decision: Decision = yield CALL
            waited = self._now() - start
            if decision.allowed:
                delay = decision.delay
                if delay > 0.0:
                    if timeout is not None and waited + delay > timeout:
                        self.refund(key, cost)
                        raise RateLimited(
                            decision._replace(allowed=False, retry_after=delay, delay=0.0),
                            self.name,
                        )
                    try:
                        yield delay
                    except BaseException:
                        self.refund(key, cost)
                        raise
                return decision
            retry_after = decision.retry_after
            if (
                not wait
                or retry_after == math.inf
                or (timeout is not None and waited + retry_after > timeout)
            ):
                raise RateLimited(decision, self.name)
            yield retry_after

    # -- as a policy (compose member, decorator) ----------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` if the ``"global"`` key admits one request; else raise ``RateLimited``."""
        decision = self.try_acquire()
        if not decision[0]:
            raise RateLimited(decision, self.name)
        if decision.delay:
            self._shape_wait_sync("global", 1, decision.delay)
        return fn(*args, **kwargs)

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        decision = await self.atry_acquire()
        if not decision[0]:
            raise RateLimited(decision, self.name)
        if decision.delay:
            await self._shape_wait_async("global", 1, decision.delay)
        return await fn(*args, **kwargs)

    def refund(self, key: str = "global", cost: float = 1) -> None:
        """Give back ``cost`` admitted earlier for ``key``.

        For the one-float algorithms (token bucket, GCRA, leaky bucket) the cost
        is returned to the bucket; window algorithms cannot tell which window
        a past admission belongs to, so for them this does nothing.  Used for
        cancelled shaped waiters and for responses that should not count.
        """
        check_cost(cost)
        try:
            self._table.refund(key, cost, self._now())
        except StoreError as exc:  # best effort: a lost refund only over-counts one request
            self._count_store_error(exc, "refund_skipped")

    @property
    def refundable(self) -> bool:
        """Whether :meth:`refund` gives anything back with this algorithm."""
        return callable(getattr(self.algorithm, "refund", None))

    def wait_delay(self, key: str, cost: float, delay: float) -> None:
        """Sleep out a shaped admission's ``Decision.delay``; refund if interrupted."""
        self._shape_wait_sync(key, cost, delay)

    async def await_delay(self, key: str, cost: float, delay: float) -> None:
        """Async :meth:`wait_delay`: a cancelled waiter gives its slot back."""
        await self._shape_wait_async(key, cost, delay)

    def _shape_wait_sync(self, key: str, cost: float, delay: float) -> None:
        steps = self._shape_steps(key, cost, delay)
        drive_sync(steps, self.clock)

    async def _shape_wait_async(self, key: str, cost: float, delay: float) -> None:
        await drive_async(self._shape_steps(key, cost, delay), self.clock)

    def _shape_steps(self, key: str, cost: float, delay: float) -> Steps[None]:
        try:
            yield delay
        except BaseException:
            self.refund(key, cost)
            raise

    # -- failures and events -------------------------------------------------------

    def _store_failed(self, exc: StoreError, key: str, cost: float) -> Decision:
        if isinstance(exc, StoreFull):
            return self._store_full(exc)
        fallback = self.fallback
        if fallback is not None:
            self._count_store_error(exc, "fallback")
            return fallback.try_acquire(key, cost)
        self._count_store_error(exc, self.on_store_error)
        limit = self.algorithm.limit
        if self.on_store_error == "fail_open":
            self.tally.allowed += 1
            return Decision(True, limit, limit, 0.0, 0.0)
        self.tally.rejected += 1
        return Decision(False, limit, 0, self.store_error_retry_after, 0.0)

    def _store_full(self, exc: StoreFull) -> Decision:
        """A new key met a full memory store: capacity, not an outage (see on_store_full)."""
        self._count_store_error(exc, self.on_store_full)
        limit = self.algorithm.limit
        if self.on_store_full == "admit":
            self.tally.allowed += 1
            return Decision(True, limit, limit, 0.0, 0.0)
        self.tally.rejected += 1
        return StoreFullDecision(False, limit, 0, max(exc.retry_after, 0.001), 0.0)

    def _count_store_error(self, exc: BaseException, action: str) -> None:
        self.store_errors += 1
        if self._events.wants(StoreFailed):
            self._events.emit(
                StoreFailed(self.name, "decide", f"{type(exc).__name__}: {exc}", action)
            )

    def _emit_rejected(self, key: str, cost: float, decision: Decision) -> None:
        self._events.emit(RateLimitExceeded(self.name, key, cost, decision.retry_after))

    def __repr__(self) -> str:
        return f"RateLimiter({self.algorithm!r}, store={self.store!r}, name={self.name!r})"
