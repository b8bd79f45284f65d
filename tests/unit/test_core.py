"""Core plumbing: the step drivers, decorator dispatch, FakeClock, invariant helpers, events."""

from __future__ import annotations

import asyncio
import functools
import math
import threading
from typing import Any

import pytest

from resilience.clock import SYSTEM_CLOCK, resolve_clock
from resilience.events import EventBus, RetryScheduled, StructlogSink
from resilience.policy import CALL, Steps, drive_async, drive_sync, is_async_callable
from resilience.testing import FakeClock, max_admitted_in_window


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


def test_fake_clock_validation_and_threaded_sleepers() -> None:
    clock = FakeClock(10.0, auto_advance=False)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.advance(math.nan)
    with pytest.raises(ValueError):
        FakeClock(math.inf)
    woke: list[float] = []
    t = threading.Thread(target=lambda: (clock.sleep(2.0), woke.append(clock.monotonic())))
    t.start()
    clock.advance(1.0)
    assert woke == []
    clock.advance(1.0)
    t.join(timeout=5)
    assert woke == [12.0]


def test_clock_resolution() -> None:
    assert resolve_clock(None) is SYSTEM_CLOCK
    with pytest.raises(ValueError, match="clock"):
        resolve_clock(object())  # type: ignore[arg-type]
    assert SYSTEM_CLOCK.monotonic() > 0


@pytest.mark.parametrize(
    ("times", "period", "expected"),
    [
        ([], 1.0, 0),
        ([0.0, 0.5, 0.99, 1.0, 1.5], 1.0, 3),
        ([0.0, 1.0, 2.0], 1.0, 1),
        ([5.0] * 4, 0.1, 4),
    ],
)
def test_max_admitted_in_window(times: list[float], period: float, expected: int) -> None:
    assert max_admitted_in_window(times, period) == expected


def test_structlog_sink_and_levels() -> None:
    lines: list[tuple[str, str, dict[str, Any]]] = []

    class Logger:
        def __getattr__(self, level: str) -> Any:
            return lambda kind, **fields: lines.append((level, kind, fields))

    bus = EventBus([StructlogSink(Logger(), min_level="info")])
    bus.emit(RetryScheduled("api", attempt=2, delay=0.5, error="boom"))
    assert lines == [
        ("info", "retry_scheduled", {"policy": "api", "attempt": 2, "delay": 0.5, "error": "boom"})
    ]
    with pytest.raises(ValueError):
        StructlogSink(min_level="verbose")
