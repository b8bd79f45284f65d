"""timeout: async cancels at the deadline; sync fails a call that returned late."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from resilience.policy import Policy
from resilience.testing import FakeClock
from resilience.timeouts import Timeout, timeout


@pytest.mark.parametrize("seconds", [0, -1, float("inf"), float("nan"), "1", True])
def test_seconds_is_validated(seconds: Any) -> None:
    with pytest.raises(ValueError, match="seconds"):
        timeout(seconds)


def test_name_and_repr() -> None:
    t = timeout(2)
    assert isinstance(t, Timeout)
    assert isinstance(t, Policy)
    assert t.name == "timeout(2s)"
    assert repr(t) == "Timeout(2.0)"
    assert timeout(1, name="db").name == "db"
    with pytest.raises(ValueError, match="name"):
        timeout(1, name="")


def test_sync_call_in_time_returns_its_result() -> None:
    clock = FakeClock()
    t = timeout(1.0, clock=clock)

    def quick(x: int) -> int:
        clock.advance(1.0)  # exactly on the limit is in time
        return x

    assert t.call(quick, 5) == 5


def test_sync_late_call_raises_timeout_error_after_returning() -> None:
    clock = FakeClock()
    t = timeout(1.0, clock=clock)
    finished: list[bool] = []

    @t
    def slow() -> str:
        clock.advance(1.5)
        finished.append(True)
        return "late"

    with pytest.raises(TimeoutError, match="result was discarded"):
        slow()
    assert finished == [True]  # the call ran to the end


def test_sync_late_exception_propagates_as_is() -> None:
    clock = FakeClock()

    def slow_failure() -> None:
        clock.advance(5)
        raise KeyError("real")

    with pytest.raises(KeyError):
        timeout(1.0, clock=clock).call(slow_failure)


async def test_async_cancels_at_the_deadline() -> None:
    cancelled: list[bool] = []

    async def hangs() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(TimeoutError):
        await timeout(0.01).acall(hangs)
    assert cancelled == [True]


async def test_async_in_time() -> None:
    @timeout(5)
    async def quick(x: int) -> int:
        await asyncio.sleep(0)
        return x

    assert await quick(3) == 3


async def test_async_on_a_fake_clock_fires_when_the_clock_says_so() -> None:
    clock = FakeClock(auto_advance=False)
    t = timeout(5.0, clock=clock)
    task = asyncio.create_task(t.acall(asyncio.Event().wait))
    for _ in range(100):
        if clock.pending:
            break
        await asyncio.sleep(0)
    clock.advance(4.0)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(1.0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(task, 10)


async def test_async_on_a_fake_clock_in_time_cleans_up_its_watchdog() -> None:
    clock = FakeClock(auto_advance=False)
    t = timeout(5.0, clock=clock)

    async def quick() -> str:
        await asyncio.sleep(0)
        return "ok"

    assert await t.acall(quick) == "ok"
    await asyncio.sleep(0)
    assert clock.pending == 0


async def test_outer_cancellation_is_not_turned_into_timeout() -> None:
    task = asyncio.create_task(timeout(100).acall(asyncio.Event().wait))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_async_on_an_auto_advancing_clock_waits_for_the_work() -> None:
    # The watchdog waits on the clock without moving it: real work that takes no
    # fake time is in time (the watchdog used to advance the clock to the deadline).
    clock = FakeClock()
    t = timeout(5.0, clock=clock)

    async def real_io() -> str:
        await asyncio.sleep(0.01)
        return "done"

    assert await t.acall(real_io) == "done"
    assert clock.monotonic() == 0.0
    await asyncio.sleep(0)
    assert clock.pending == 0  # the watchdog is gone


async def test_async_work_sleeping_past_the_deadline_on_the_clock_times_out() -> None:
    clock = FakeClock()
    t = timeout(5.0, clock=clock)
    reached: list[float] = []

    async def sleeps(seconds: float) -> str:
        await clock.asleep(seconds)
        reached.append(clock.monotonic())
        await asyncio.sleep(0)
        return "late"

    assert await t.acall(sleeps, 4.0) == "late"
    with pytest.raises(TimeoutError):
        await t.acall(sleeps, 10.0)
    # Cancelled at its next suspension after the clock passed the deadline: the clock
    # moved 10 s in one step, so the work could not be stopped halfway through it.
    assert reached == [4.0, 14.0]


async def test_fake_clock_wait_until_never_moves_time() -> None:
    clock = FakeClock()  # auto-advancing: asleep would move it, wait_until does not
    waiter = asyncio.create_task(clock.wait_until(3.0))
    await asyncio.sleep(0)
    assert not waiter.done() and clock.monotonic() == 0.0 and clock.pending == 1
    clock.advance(2.0)
    await asyncio.sleep(0)
    assert not waiter.done()
    await clock.asleep(1.0)  # someone else's sleep moves time to the deadline
    await asyncio.wait_for(waiter, 5)
    await clock.wait_until(1.0)  # already passed: returns at once
    with pytest.raises(ValueError, match="finite"):
        await clock.wait_until(float("inf"))
