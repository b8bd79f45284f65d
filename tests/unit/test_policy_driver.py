"""The step drivers (``drive_sync``/``drive_async``) and sync/async dispatch."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from resilience.policy import CALL, Steps, drive_async, drive_sync, is_async_callable
from resilience.testing import FakeClock


def retry_twice() -> Steps[Any]:
    """A tiny policy written as steps: call, on error sleep 1 s and call again."""
    for attempt in range(2):
        try:
            return (yield CALL)
        except ValueError:
            if attempt == 1:
                raise
            yield 1.0
    raise AssertionError("unreachable")


def test_drive_sync_runs_calls_sleeps_and_throws_errors_in() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise ValueError("first")
        return x * 10

    assert drive_sync(retry_twice(), clock, flaky, (4,)) == 40
    assert clock.sleeps == [1.0]
    with pytest.raises(ValueError, match="always"):
        drive_sync(retry_twice(), clock, lambda: (_ for _ in ()).throw(ValueError("always")))


async def test_drive_async_and_cleanup_on_cancel() -> None:
    clock = FakeClock(auto_advance=False)
    released: list[bool] = []

    def holds_a_permit() -> Steps[None]:
        try:
            yield 5.0
        finally:
            released.append(True)

    task = asyncio.create_task(drive_async(holds_a_permit(), clock))
    for _ in range(50):
        if clock.pending:
            break
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert released == [True]

    async def value() -> int:
        return 7

    def one_call() -> Steps[int]:
        return (yield CALL)

    assert await drive_async(one_call(), clock, value) == 7


def test_is_async_callable() -> None:
    async def coro() -> None: ...

    class AsyncCallable:
        async def __call__(self) -> None: ...

    assert is_async_callable(coro)
    assert is_async_callable(functools.partial(coro))
    assert is_async_callable(AsyncCallable())
    assert not is_async_callable(lambda: None)
    assert not is_async_callable(print)
