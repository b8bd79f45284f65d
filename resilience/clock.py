"""Injected time.

Policies never read the wall clock in a decision: they take ``now`` from an
object with ``monotonic()``.  Waiting goes through the same object's
``sleep`` / ``asleep`` so that :class:`resilience.testing.FakeClock` can drive
every policy deterministically in tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = [
    "SYSTEM_CLOCK",
    "Clock",
    "SleepingClock",
    "SystemClock",
    "now_function",
    "resolve_clock",
    "sleep_async",
    "sleep_sync",
]


@runtime_checkable
class Clock(Protocol):
    """Anything that tells monotonic time in seconds."""

    def monotonic(self) -> float: ...


@runtime_checkable
class SleepingClock(Clock, Protocol):
    """A clock that can also wait, synchronously and asynchronously."""

    def sleep(self, seconds: float) -> None: ...

    async def asleep(self, seconds: float) -> None: ...


class SystemClock:
    """The production clock: ``time.monotonic`` and real sleeps."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds if seconds > 0 else 0)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


def resolve_clock(clock: Clock | None) -> Clock:
    """Return ``clock`` or the system clock, checking the protocol early."""
    if clock is None:
        return SYSTEM_CLOCK
    if not callable(getattr(clock, "monotonic", None)):
        raise ValueError(f"clock must have a monotonic() method, got {clock!r}")
    return clock


def now_function(clock: Clock) -> Callable[[], float]:
    """The fastest callable returning ``clock.monotonic()``."""
    if isinstance(clock, SystemClock):
        return time.monotonic
    return clock.monotonic


def sleep_sync(clock: Clock, seconds: float) -> None:
    """Sleep on ``clock``; a clock without ``sleep`` cannot be waited on."""
    sleeper = getattr(clock, "sleep", None)
    if sleeper is None:
        raise TypeError(f"{clock!r} has no sleep(); pass a clock that can wait")
    sleeper(seconds)


async def sleep_async(clock: Clock, seconds: float) -> None:
    """Await ``clock.asleep``; a clock without it cannot be waited on."""
    sleeper = getattr(clock, "asleep", None)
    if sleeper is None:
        raise TypeError(f"{clock!r} has no asleep(); pass a clock that can wait")
    await sleeper(seconds)


async def wait_until_async(clock: Clock, deadline: float) -> None:
    """Wait until ``clock`` reads ``deadline``: a deadline, not a sleep.

    A clock with ``wait_until`` (``FakeClock``) waits without moving time, so a
    deadline racing the work it bounds (a timeout's watchdog, a queue timeout)
    never expires it by itself; any other clock is slept on for what is left.
    """
    waiter = getattr(clock, "wait_until", None)
    if waiter is not None:
        await waiter(deadline)
    else:
        await sleep_async(clock, max(0.0, deadline - clock.monotonic()))
