"""Deadlines on ``FakeClock``: they never move an auto-advancing clock by themselves
(the work they bound does), and ``autojump`` moves it to them when nothing else does."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from resilience import Bulkhead, BulkheadFull, timeout
from resilience.testing import FakeClock

WAIT = 10.0  # real seconds a test waits at most for a thread it started


def test_call_at_fires_when_time_gets_there_and_never_moves_it() -> None:
    clock = FakeClock(auto_advance=False)
    fired: list[float] = []
    cancel = clock.call_at(5.0, lambda: fired.append(clock.monotonic()))
    clock.advance(4.0)
    assert fired == []
    clock.advance(1.0)
    assert fired == [5.0]
    cancel()  # after firing: nothing happens
    gone = clock.call_at(7.0, lambda: fired.append(-1.0))
    gone()
    clock.advance(10.0)
    clock.call_at(1.0, lambda: fired.append(clock.monotonic()))  # passed: at once
    assert fired == [5.0, 15.0]
    with pytest.raises(ValueError, match="finite"):
        clock.call_at(float("nan"), lambda: None)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "1", True])
def test_autojump_is_validated(bad: Any) -> None:
    with pytest.raises(ValueError, match="autojump"):
        FakeClock(autojump=bad)


def test_sync_bulkhead_waiter_gets_the_slot_its_holder_frees_in_fake_time() -> None:
    clock = FakeClock()  # auto-advancing: the queue timeout used to expire at once
    bulkhead = Bulkhead("bh", max_concurrent=1, max_queue=1, queue_timeout=2.0, clock=clock)
    holding, release = threading.Event(), threading.Event()

    def holder() -> str:
        holding.set()
        release.wait(WAIT)
        clock.sleep(1.0)  # the work takes one fake second
        return "held"

    worker = threading.Thread(target=bulkhead.call, args=(holder,))
    worker.start()
    assert holding.wait(WAIT)

    def release_once_queued() -> None:
        for _ in range(10_000):  # bounded: 10 s of real time at most
            if bulkhead.queued:
                break
            threading.Event().wait(0.001)
        release.set()

    threading.Thread(target=release_once_queued).start()
    assert bulkhead.call(lambda: "queued") == "queued"
    worker.join(WAIT)
    assert clock.monotonic() == 1.0  # the waiter's deadline (2.0) never moved time


async def test_async_bulkhead_waiter_gets_the_slot_its_holder_frees_in_fake_time() -> None:
    clock = FakeClock()
    bulkhead = Bulkhead("bh", max_concurrent=1, max_queue=1, queue_timeout=2.0, clock=clock)

    async def holder() -> str:
        await asyncio.sleep(0.01)  # real I/O first: the queued waiter registers meanwhile
        await clock.asleep(1.0)
        return "held"

    first = asyncio.create_task(bulkhead.acall(holder))
    await asyncio.sleep(0)
    assert bulkhead.active == 1

    async def queued() -> str:
        return "queued"

    second = asyncio.create_task(bulkhead.acall(queued))
    await asyncio.sleep(0)
    assert bulkhead.queued == 1  # it waits in the queue, and its deadline moves nothing
    assert await second == "queued"
    assert await first == "held"
    assert clock.monotonic() == 1.0


def test_sync_waiter_nobody_frees_times_out_by_autojump() -> None:
    clock = FakeClock(autojump=0.02)
    bulkhead = Bulkhead("bh", max_concurrent=1, max_queue=1, queue_timeout=2.0, clock=clock)

    def nested() -> str:  # holds the only slot and queues behind itself: nobody frees it
        return bulkhead.call(lambda: "never")

    with pytest.raises(BulkheadFull):
        bulkhead.call(nested)
    assert clock.monotonic() == 2.0  # jumped exactly to the deadline


async def test_async_timeout_on_a_hung_dependency_fires_by_autojump() -> None:
    clock = FakeClock(autojump=0.02)
    with pytest.raises(TimeoutError):
        await timeout(30.0, clock=clock).acall(asyncio.Event().wait)
    assert clock.monotonic() == 30.0


async def test_no_autojump_while_the_work_moves_time() -> None:
    clock = FakeClock(autojump=0.05)
    limited = timeout(30.0, clock=clock)

    async def busy() -> str:
        for _ in range(10):  # 10 x 0.02 s real, each moving fake time: no jump
            await asyncio.sleep(0.02)
            await clock.asleep(1.0)
        return "done"

    assert await limited.acall(busy) == "done"
    assert clock.monotonic() == 10.0


async def test_autojump_none_and_a_manual_clock_never_jump() -> None:
    for clock in (FakeClock(autojump=None), FakeClock(auto_advance=False, autojump=0.01)):
        waiter = asyncio.create_task(clock.wait_until(5.0))
        await asyncio.sleep(0.1)  # ten autojump periods of the second clock
        assert not waiter.done() and clock.monotonic() == 0.0
        clock.advance(5.0)
        await asyncio.wait_for(waiter, WAIT)
