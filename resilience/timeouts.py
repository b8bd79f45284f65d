"""``timeout``: bound how long a call may take.

Async calls are cancelled when time is up (``asyncio.timeout``), and the
caller gets ``TimeoutError``.  A synchronous call cannot be interrupted
safely in Python (killing a thread mid-call corrupts whatever it held), so
the sync form lets the call finish and then raises ``TimeoutError`` if it
took too long, discarding the late result.  That still matters: a caller
that composes ``timeout`` with ``retry`` or a breaker sees a late answer as a
failure, which is how the outside world sees it too.  Bound the call itself
(socket timeouts, client options) to actually stop waiting.

With an injected clock other than the system clock (``FakeClock`` in tests)
the async deadline is driven by that clock: a watchdog waits on it and then
fires the same ``asyncio.timeout`` context, so cancellation semantics are
asyncio's own.  The watchdog waits with the clock's ``wait_until`` when it
has one (``FakeClock`` does), which never moves time: only the work or the
test does, so an auto-advancing clock no longer expires every call at once.
A call that returns after the clock passed its deadline (it moved the clock
past it without yielding in between) gets ``TimeoutError``, as in the sync form.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from resilience import _validate
from resilience.clock import Clock, SystemClock, now_function, resolve_clock, wait_until_async
from resilience.policy import Policy

__all__ = ["Timeout", "timeout"]

P = ParamSpec("P")
R = TypeVar("R")


class Timeout(Policy):
    """Fail a call with ``TimeoutError`` after ``seconds``; see :func:`timeout`."""

    __slots__ = ("_clock", "_now", "_system", "name", "seconds")

    def __init__(
        self, seconds: float, *, clock: Clock | None = None, name: str | None = None
    ) -> None:
        _validate.positive_number(seconds, "seconds")
        _validate.optional_non_empty_str(name, "name")
        self.seconds = float(seconds)
        self.name = name or f"timeout({self.seconds:g}s)"
        self._clock = resolve_clock(clock)
        self._now = now_function(self._clock)
        self._system = isinstance(self._clock, SystemClock)

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn``; if it returned later than ``seconds``, raise ``TimeoutError`` instead."""
        now = self._now
        start = now()
        result = fn(*args, **kwargs)
        elapsed = now() - start
        if elapsed > self.seconds:
            raise self._late(elapsed)
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn``, cancelling it after ``seconds``; raises ``TimeoutError``."""
        if self._system:
            async with asyncio.timeout(self.seconds):
                return await fn(*args, **kwargs)
        now = self._now
        start = now()
        async with asyncio.timeout(None) as scope:
            watchdog = asyncio.get_running_loop().create_task(
                self._expire(scope, start + self.seconds)
            )
            try:
                result = await fn(*args, **kwargs)
            finally:
                watchdog.cancel()
        elapsed = now() - start
        if elapsed > self.seconds:
            raise self._late(elapsed)
        return result

    def _late(self, elapsed: float) -> TimeoutError:
        return TimeoutError(
            f"{self.name}: call returned after {elapsed:.3f}s; its result was discarded"
        )

    async def _expire(self, scope: asyncio.Timeout, deadline: float) -> None:
        """Fire ``scope`` once the injected clock reaches ``deadline``."""
        await wait_until_async(self._clock, deadline)
        scope.reschedule(asyncio.get_running_loop().time())

    def __repr__(self) -> str:
        return f"Timeout({self.seconds!r})"


def timeout(seconds: float, *, clock: Clock | None = None, name: str | None = None) -> Timeout:
    """A policy that fails calls running longer than ``seconds`` with ``TimeoutError``.

    Async: the call is cancelled at the deadline.  Sync: the call runs to the
    end and ``TimeoutError`` replaces a late result (Python cannot interrupt
    a running function safely); an exception from a late call propagates as is.
    """
    return Timeout(seconds, clock=clock, name=name)
