"""``Bulkhead(clock=...)``: the queue timeout runs on the injected clock (FakeClock in tests)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from resilience.bulkhead import AdaptiveBulkhead, Bulkhead
from resilience.errors import BulkheadFull
from resilience.events import BulkheadRejected, EventBus
from resilience.testing import FakeClock


def bulkhead(clock: FakeClock, events: list[Any] | None = None, **kwargs: Any) -> Bulkhead:
    sink = EventBus([events.append]) if events is not None else EventBus()
    return Bulkhead(
        "b", max_concurrent=1, max_queue=1, queue_timeout=5.0, clock=clock, events=sink, **kwargs
    )


async def until(condition: Any) -> None:
    for _ in range(2000):  # bounded: at most about 2 s of real time
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


async def one_held_one_queued(
    b: Bulkhead,
) -> tuple[asyncio.Event, asyncio.Task[Any], asyncio.Task[Any]]:
    """A task holding the only slot until ``release`` is set, and one queued behind it."""
    release = asyncio.Event()
    holder = asyncio.create_task(b.acall(release.wait))
    await until(lambda: b.active == 1)
    waiter = asyncio.create_task(b.acall(asyncio.sleep, 0, "ran"))
    await until(lambda: b.queued == 1)
    return release, holder, waiter


async def test_async_queue_timeout_follows_the_fake_clock() -> None:
    clock, events = FakeClock(auto_advance=False), list[Any]()
    b = bulkhead(clock, events)
    release, holder, waiter = await one_held_one_queued(b)
    clock.advance(4.9)
    await asyncio.sleep(0.01)
    assert not waiter.done() and b.queued == 1  # real time passes, fake time has not
    clock.advance(0.2)
    with pytest.raises(BulkheadFull):
        await asyncio.wait_for(waiter, 2.0)
    assert [e.reason for e in events if isinstance(e, BulkheadRejected)] == ["timeout"]
    release.set()
    await holder
    assert b.active == 0 and b.queued == 0


async def test_async_slot_freed_before_the_fake_deadline_is_taken() -> None:
    clock = FakeClock(auto_advance=False)
    b = bulkhead(clock)
    release, holder, waiter = await one_held_one_queued(b)
    clock.advance(4.0)
    release.set()
    assert await asyncio.wait_for(waiter, 2.0) == "ran"
    await holder
    clock.advance(10.0)  # the cancelled timer must not touch anything now
    await asyncio.sleep(0)
    assert b.active == 0 and b.queued == 0


def test_thread_queue_timeout_follows_the_fake_clock() -> None:
    clock = FakeClock(auto_advance=False)
    b = bulkhead(clock)
    holding, release = threading.Event(), threading.Event()
    outcome: list[object] = []

    def hold() -> None:
        b.call(lambda: (holding.set(), release.wait(5.0)))

    def wait() -> None:
        try:
            outcome.append(b.call(lambda: "ran"))
        except BulkheadFull as exc:
            outcome.append(exc)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5.0)
    waiter = threading.Thread(target=wait)
    waiter.start()
    for _ in range(2000):
        if b.queued == 1:
            break
        threading.Event().wait(0.001)
    assert b.queued == 1
    clock.advance(4.9)
    waiter.join(0.05)
    assert waiter.is_alive() and not outcome
    clock.advance(0.2)
    waiter.join(5.0)
    assert not waiter.is_alive() and isinstance(outcome[0], BulkheadFull)
    release.set()
    holder.join(5.0)
    assert b.active == 0 and b.queued == 0


def test_an_auto_advancing_clock_times_a_sync_waiter_out_at_once() -> None:
    clock = FakeClock()
    b = bulkhead(clock)
    holding, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=lambda: b.call(lambda: (holding.set(), release.wait(5.0))))
    holder.start()
    assert holding.wait(5.0)
    with pytest.raises(BulkheadFull):
        b.call(lambda: "ran")
    assert clock.monotonic() == pytest.approx(5.0)  # the wait moved fake time, not real time
    release.set()
    holder.join(5.0)
    assert b.active == 0


def test_adaptive_bulkhead_passes_its_clock_on() -> None:
    clock = FakeClock()
    b = AdaptiveBulkhead("a", clock=clock, max_queue=1, queue_timeout=1.0, events=EventBus())
    assert b.clock is clock
    assert b.call(lambda: 7) == 7


def test_clock_is_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="clock"):
        Bulkhead("b", clock=object())  # type: ignore[arg-type]
