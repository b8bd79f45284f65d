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
from typing import Any, Final, ParamSpec, TypeVar

from resilience._validate import non_empty_str, optional_seconds, whole_number
from resilience.clock import (
    Clock,
    SystemClock,
    now_function,
    resolve_clock,
    sleep_sync,
    wait_until_async,
)
from resilience.errors import BulkheadFull, PrebuiltRefusal
from resilience.events import BulkheadRejected, EventBus, resolve_bus
from resilience.metrics import Tally
from resilience.policy import Io, Policy, Steps, drive_async, drive_sync

__all__ = ["Bulkhead"]

P = ParamSpec("P")
R = TypeVar("R")


class _Waiter:
    """A queued caller.  Queued unbound; the driver's wait binds a lock (a thread) or a future.

    A slot handed over before the wait binds is seen by the wait at once
    (``granted`` is read under the bulkhead's lock), so the queueing step is
    the same for threads and tasks and only the wait itself differs.
    """

    __slots__ = ("deadline", "future", "granted", "lock", "loop", "thread")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline  # on the bulkhead's clock, from when it queued
        self.granted = False
        self.lock: threading.Lock | None = None
        self.future: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = 0

    def wake(self) -> bool:
        """Tell the waiter it holds a slot; ``False`` if it can no longer be told."""
        if self.lock is not None:
            self.lock.release()
            return True
        future = self.future
        if future is None:  # not waiting yet: it will see ``granted`` when it binds
            return True
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


class _Queue:
    __slots__ = ()


QUEUE: Final = _Queue()
"""``Bulkhead._take``'s answer when every slot is taken and the caller may queue."""
FULL: Final = _Queue()
"""``Bulkhead._take``'s answer when every slot is taken and nobody may queue.

The caller builds the ``BulkheadFull`` in its ``raise`` statement: an
exception held in a local of the raising frame would form a cycle (error,
traceback, frame, local) that only the garbage collector frees, which
measured +400 ns per refusal.
"""


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def check_timeout(value: object, field: str) -> float | None:
    """``None`` or seconds ``>= 0``; infinity means no timeout, kept as ``None``."""
    seconds = optional_seconds(value, field)
    return None if seconds == math.inf else seconds


class _BulkheadFull(PrebuiltRefusal, BulkheadFull):
    """``BulkheadFull`` built by C code alone (see ``PrebuiltRefusal``): a refusal is the
    full bulkhead's hot path."""


class Bulkhead(Policy):
    """Limit concurrent calls; queue a bounded number; refuse the rest.

    ``max_queue=0`` (the default) means no waiting: a call that finds every
    slot taken is refused at once.  ``queue_timeout=None`` lets queued calls
    wait until a slot frees; the timeout runs on ``clock`` (the system clock
    by default; a :class:`~resilience.testing.FakeClock` drives it in tests).
    Use ``.call`` / ``await .acall`` or ``@bulkhead``.
    """

    __slots__ = (
        "__weakref__",  # metrics exporters track policies weakly
        "_active",
        "_events",
        "_limit",
        "_lock",
        "_now",
        "_system",
        "_waiters",
        "clock",
        "max_queue",
        "name",
        "queue_timeout",
        "tally",
    )

    def __init__(
        self,
        name: str,
        *,
        max_concurrent: int = 10,
        max_queue: int = 0,
        queue_timeout: float | None = None,
        clock: Clock | None = None,
        events: EventBus | None = None,
    ) -> None:
        self.name = non_empty_str(name, "name")
        self._limit = whole_number(max_concurrent, "max_concurrent", 1)
        self.max_queue = whole_number(max_queue, "max_queue", 0)
        self.queue_timeout = check_timeout(queue_timeout, "queue_timeout")
        self.clock = resolve_clock(clock)
        self._system = isinstance(self.clock, SystemClock)
        self._now = now_function(self.clock)
        self._events = resolve_bus(events)
        self._lock = threading.Lock()
        self._active = 0
        self._waiters: deque[_Waiter] = deque()
        self.tally = Tally()
        """Calls admitted (``allowed``) and refused so far, read by metrics exporters."""

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
    # The hot path: take a free slot, run, give it back.  call and acall differ
    # only in ``await fn``; queueing is one step generator (``_queue``) that
    # both drivers run, with the wait itself as an Io step.

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` in a slot (waiting in the queue if allowed); else raise ``BulkheadFull``."""
        verdict = self._take()
        if verdict is not None:  # raised here, not in _take: one traceback frame less
            if verdict is FULL:
                raise self._rejected("full")
            drive_sync(self._queue(), self.clock)
        try:
            return fn(*args, **kwargs)
        finally:
            self._release()

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn`` in a slot; a cancelled or timed-out waiter takes no slot."""
        verdict = self._take()
        if verdict is not None:  # raised here, not in _take: one traceback frame less
            if verdict is FULL:
                raise self._rejected("full")
            await drive_async(self._queue(), self.clock)
        try:
            return await fn(*args, **kwargs)
        finally:
            self._release()

    # -- slots ------------------------------------------------------------------

    def _take(self) -> _Queue | None:
        """Take a free slot (``None``); else ``QUEUE``, or ``FULL`` when nobody may queue."""
        lock = self._lock
        lock.acquire()  # acquire/release: cheaper than ``with`` on this path
        if self._active < self._limit and not self._waiters:
            self._active += 1
            self.tally.allowed += 1
            lock.release()
            return None
        if self.max_queue:
            lock.release()
            return QUEUE
        self.tally.rejected += 1
        lock.release()
        return FULL

    def _queue(self) -> Steps[None]:
        """Queue for a slot and wait for it (the wait is the driver's); one path for both."""
        waiter = self._admit_or_queue()
        if waiter is None:
            return
        try:
            yield Io(self._wait_thread, self._wait_task, waiter)
        except TimeoutError:
            if self._abandon(waiter):
                return  # a slot arrived as the timer fired: use it
            with self._lock:
                self.tally.rejected += 1
            raise self._rejected("timeout") from None
        except BaseException:  # cancelled or interrupted: give back a slot handed over meanwhile
            if self._abandon(waiter):
                self._release()
            raise

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
            if waiter.wake():
                self.tally.allowed += 1
            else:
                waiter.granted = False
                self._active -= 1

    def _admit_or_queue(self) -> _Waiter | None:
        """Under the lock: take a free slot (``None``), queue a waiter, or refuse."""
        with self._lock:
            if self._active < self._limit and not self._waiters:
                self._active += 1
                self.tally.allowed += 1
                return None
            if len(self._waiters) < self.max_queue:
                timeout = self.queue_timeout
                waiter = _Waiter(math.inf if timeout is None else self._now() + timeout)
                self._waiters.append(waiter)
                return waiter
            self.tally.rejected += 1
        raise self._rejected("full")

    def _abandon(self, waiter: _Waiter) -> bool:
        """A waiter gives up; ``True`` if it had been handed a slot (it now owns it)."""
        with self._lock:
            if waiter.granted:
                return True
            with contextlib.suppress(ValueError):  # dropped by _drain or by its timer
                self._waiters.remove(waiter)
            return False

    def _bind(self, waiter: _Waiter, **how: Any) -> bool:
        """Attach the wait's lock or future; ``False`` if a slot was handed over already."""
        with self._lock:
            if waiter.granted:
                return False
            for field, value in how.items():
                setattr(waiter, field, value)
            waiter.thread = threading.get_ident()
            return True

    # -- the two waits (the only driver-specific code) ----------------------------------

    def _wait_thread(self, waiter: _Waiter) -> None:
        """Block this thread until handed a slot; ``TimeoutError`` after ``queue_timeout``."""
        lock = threading.Lock()
        lock.acquire()
        if not self._bind(waiter, lock=lock):
            return
        timeout = self.queue_timeout
        if timeout is None:
            lock.acquire()
        elif self._system:
            if not lock.acquire(timeout=min(timeout, threading.TIMEOUT_MAX)):
                raise TimeoutError
        else:  # another clock: it frees this waiter at the deadline
            call_at = getattr(self.clock, "call_at", None)
            if call_at is not None:  # FakeClock: no thread, and time moves only when told
                cancel = call_at(waiter.deadline, lambda: self._expire(waiter))
                try:
                    lock.acquire()
                finally:
                    cancel()
            else:  # a clock that can only sleep: a timer thread sleeps on it
                timer = threading.Thread(target=self._expire_thread, args=(waiter,), daemon=True)
                timer.start()
                lock.acquire()
            if not waiter.granted:
                raise TimeoutError

    def _expire_thread(self, waiter: _Waiter) -> None:
        sleep_sync(self.clock, max(0.0, waiter.deadline - self._now()))
        self._expire(waiter)

    def _expire(self, waiter: _Waiter) -> None:
        """The deadline of a sync waiter came: drop it from the queue and wake it."""
        with self._lock:
            if waiter.granted or waiter not in self._waiters:
                return
            self._waiters.remove(waiter)  # so no slot is ever handed to it
        assert waiter.lock is not None
        waiter.lock.release()

    async def _wait_task(self, waiter: _Waiter) -> None:
        """Await a slot; ``TimeoutError`` after ``queue_timeout`` on the bulkhead's clock."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._bind(waiter, future=future, loop=loop):
            return
        timeout = self.queue_timeout
        if timeout is None:
            await future
        elif self._system:
            async with asyncio.timeout(timeout):
                await future
        else:  # another clock: a timer task sleeps on it
            timer = loop.create_task(self._expire_task(future, waiter.deadline))
            try:
                await future
            finally:
                timer.cancel()

    async def _expire_task(self, future: asyncio.Future[None], deadline: float) -> None:
        await wait_until_async(self.clock, deadline)
        if not future.done():
            future.set_exception(TimeoutError())

    def _rejected(self, reason: str) -> BulkheadFull:
        if self._events.wants(BulkheadRejected):
            self._events.emit(BulkheadRejected(self.name, reason))
        error: BulkheadFull = _BulkheadFull(self.name, 0.0)
        return error

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, max_concurrent={self._limit}, "
            f"max_queue={self.max_queue}, queue_timeout={self.queue_timeout!r})"
        )
