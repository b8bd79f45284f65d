"""``Bulkhead``: at most N calls at once, a bounded queue, and a queue timeout.

One slow dependency should exhaust only its own slots, not every thread or
connection of the service.  A bulkhead admits ``max_concurrent`` calls; up to
``max_queue`` more wait (at most ``queue_timeout`` seconds) in FIFO order;
anything beyond is refused at once with :class:`~resilience.errors.BulkheadFull`,
which is the point: failing fast under overload beats queueing without bound.

One object serves threads and asyncio tasks (even on several event loops) at
the same time: the state is a counter and a FIFO of waiters under one
``threading.Lock`` that is never held while a protected call runs or while
anyone waits.  A released slot is handed directly to the first waiter
(``active`` does not drop), so a newcomer cannot overtake the queue.  A
waiter that is cancelled or times out after being handed a slot passes it
on, so every permit comes back after success, exception, timeout or
cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from resilience.errors import BulkheadFull
from resilience.events import BulkheadRejected, EventBus, default_bus
from resilience.policy import Policy

__all__ = ["Bulkhead"]

P = ParamSpec("P")
R = TypeVar("R")


class _Waiter:
    """A queued caller: a thread blocked on a lock, or a task awaiting a future."""

    __slots__ = ("future", "granted", "lock", "loop", "thread")

    def __init__(
        self,
        lock: threading.Lock | None,
        future: asyncio.Future[None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.granted = False
        self.lock = lock
        self.future = future
        self.loop = loop
        self.thread = threading.get_ident()

    def wake(self) -> bool:
        """Tell the waiter it holds a slot; ``False`` if it can no longer be told."""
        if self.lock is not None:
            self.lock.release()
            return True
        future = self.future
        assert future is not None
        assert self.loop is not None
        if threading.get_ident() == self.thread:
            if not future.done():
                future.set_result(None)
            return True
        try:
            self.loop.call_soon_threadsafe(_resolve, future)
        except RuntimeError:  # its event loop is closed: nobody will ever take the slot
            return False
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    return name


def check_whole(value: object, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{field} must be a whole number >= {minimum}, got {value!r}")
    return value


def check_timeout(value: object, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{field} must be a number of seconds or None, got {value!r}")
    if value < 0:
        raise ValueError(f"{field} must not be negative, got {value!r}")
    return None if value == math.inf else float(value)


class Bulkhead(Policy):
    """Limit concurrent calls; queue a bounded number; refuse the rest.

    ``max_queue=0`` (the default) means no waiting: a call that finds every
    slot taken is refused at once.  ``queue_timeout=None`` lets queued calls
    wait until a slot frees.  Use ``.call`` / ``await .acall`` or ``@bulkhead``.
    """

    __slots__ = (
        "_active",
        "_events",
        "_limit",
        "_lock",
        "_waiters",
        "max_queue",
        "name",
        "queue_timeout",
    )

    def __init__(
        self,
        name: str,
        *,
        max_concurrent: int = 10,
        max_queue: int = 0,
        queue_timeout: float | None = None,
        events: EventBus | None = None,
    ) -> None:
        self.name = check_name(name)
        self._limit = check_whole(max_concurrent, "max_concurrent", 1)
        self.max_queue = check_whole(max_queue, "max_queue", 0)
        self.queue_timeout = check_timeout(queue_timeout, "queue_timeout")
        self._events = default_bus if events is None else events
        self._lock = threading.Lock()
        self._active = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def max_concurrent(self) -> int:
        """The current concurrency limit."""
        return self._limit

    @property
    def active(self) -> int:
        """Calls running now (slots taken)."""
        return self._active

    @property
    def queued(self) -> int:
        """Calls waiting for a slot."""
        return len(self._waiters)

    # -- running a call ---------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` in a slot (waiting in the queue if allowed); else raise ``BulkheadFull``."""
        lock = self._lock
        lock.acquire()
        if self._active < self._limit and not self._waiters:
            self._active += 1
            lock.release()
        elif not self.max_queue:
            lock.release()
            if self._events.wants(BulkheadRejected):
                self._events.emit(BulkheadRejected(self.name, "full"))
            raise BulkheadFull(self.name)
        else:
            lock.release()
            self._enter_slow()
        try:
            return fn(*args, **kwargs)
        finally:
            self._release()

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn`` in a slot; a cancelled or timed-out waiter takes no slot."""
        lock = self._lock
        lock.acquire()
        if self._active < self._limit and not self._waiters:
            self._active += 1
            lock.release()
        elif not self.max_queue:
            lock.release()
            if self._events.wants(BulkheadRejected):
                self._events.emit(BulkheadRejected(self.name, "full"))
            raise BulkheadFull(self.name)
        else:
            lock.release()
            await self._aenter_slow()
        try:
            return await fn(*args, **kwargs)
        finally:
            self._release()

    # -- slots ------------------------------------------------------------------

    def _enter(self) -> None:
        """Take a slot for a thread: the fast check, else the queue (for subclasses)."""
        with self._lock:
            if self._active < self._limit and not self._waiters:
                self._active += 1
                return
        self._enter_slow()

    async def _aenter(self) -> None:
        """Take a slot for a task: the fast check, else the queue (for subclasses)."""
        with self._lock:
            if self._active < self._limit and not self._waiters:
                self._active += 1
                return
        await self._aenter_slow()

    def _release(self) -> None:
        with self._lock:
            self._active -= 1
            if self._waiters:
                self._drain()

    def _drain(self) -> None:
        """Hand free slots to waiters in FIFO order.  Caller holds the lock."""
        waiters = self._waiters
        while waiters and self._active < self._limit:
            waiter = waiters.popleft()
            waiter.granted = True
            self._active += 1
            if not waiter.wake():
                waiter.granted = False
                self._active -= 1

    def _admit_or_queue(self, waiter_factory: Callable[[], _Waiter]) -> _Waiter | None:
        """Under the lock: take a free slot (``None``), queue a waiter, or refuse."""
        with self._lock:
            if self._active < self._limit and not self._waiters:
                self._active += 1
                return None
            if len(self._waiters) >= self.max_queue:
                reason = "full"
            else:
                waiter = waiter_factory()
                self._waiters.append(waiter)
                return waiter
        raise self._rejected(reason)

    def _abandon(self, waiter: _Waiter) -> bool:
        """A waiter gives up; ``True`` if it had been handed a slot (it now owns it)."""
        with self._lock:
            if waiter.granted:
                return True
            with contextlib.suppress(ValueError):  # dropped by _drain (its loop closed)
                self._waiters.remove(waiter)
            return False

    def _enter_slow(self) -> None:
        waiter = self._admit_or_queue(_thread_waiter)
        if waiter is None:
            return
        assert waiter.lock is not None
        timeout = self.queue_timeout
        try:
            limit = -1 if timeout is None else min(timeout, threading.TIMEOUT_MAX)
            woke = waiter.lock.acquire(timeout=limit)
        except BaseException:  # KeyboardInterrupt while blocked
            if self._abandon(waiter):
                self._release()
            raise
        if woke or self._abandon(waiter):
            return
        raise self._rejected("timeout")

    async def _aenter_slow(self) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._admit_or_queue(lambda: _Waiter(None, loop.create_future(), loop))
        if waiter is None:
            return
        assert waiter.future is not None
        timeout = self.queue_timeout
        try:
            if timeout is None:
                await waiter.future
            else:
                async with asyncio.timeout(timeout):
                    await waiter.future
        except TimeoutError:
            if self._abandon(waiter):
                return  # a slot arrived as the timer fired: use it
            raise self._rejected("timeout") from None
        except BaseException:  # cancelled: give back a slot handed to us meanwhile
            if self._abandon(waiter):
                self._release()
            raise

    def _rejected(self, reason: str) -> BulkheadFull:
        if self._events.wants(BulkheadRejected):
            self._events.emit(BulkheadRejected(self.name, reason))
        return BulkheadFull(self.name)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, max_concurrent={self._limit}, "
            f"max_queue={self.max_queue}, queue_timeout={self.queue_timeout!r})"
        )


def _thread_waiter() -> _Waiter:
    lock = threading.Lock()
    lock.acquire()
    return _Waiter(lock)
