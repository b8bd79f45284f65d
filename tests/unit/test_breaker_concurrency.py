"""No lock is held during the call; half-open admits exactly its probes; counts survive threads."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from resilience.breaker import CircuitBreaker, CircuitState, CountWindow, TimeWindow
from resilience.errors import CircuitOpen
from resilience.events import EventBus
from resilience.testing import FakeClock

WINDOWS = [CountWindow(20), TimeWindow(60)]


def tripped(clock: FakeClock, window: Any, probes: int) -> CircuitBreaker:
    breaker = CircuitBreaker(
        "dep",
        minimum_calls=1,
        window=window,
        half_open_max_calls=probes,
        open_duration=5.0,
        clock=clock,
        events=EventBus(),
    )
    breaker.force_open()
    breaker.reset()
    permit = breaker.permit()
    breaker.on_failure(permit)
    assert breaker.state is CircuitState.OPEN
    clock.advance(5.0)
    return breaker


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("probes", [1, 5])
async def test_thousand_tasks_in_half_open_only_probes_get_through(
    window: Any, probes: int
) -> None:
    breaker = tripped(FakeClock(), window, probes)
    gate = asyncio.Event()
    entered = 0

    async def probe() -> str:
        nonlocal entered
        entered += 1
        await gate.wait()
        return "ok"

    tasks = [asyncio.create_task(breaker.acall(probe)) for _ in range(1000)]
    for _ in range(3):
        await asyncio.sleep(0)  # let every task ask for its permit
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    rejected = [r for r in results if isinstance(r, CircuitOpen)]
    assert entered == probes
    assert results.count("ok") == probes
    assert len(rejected) == 1000 - probes
    assert all(r.retry_after > 0 for r in rejected)
    assert breaker.state is CircuitState.CLOSED


@pytest.mark.parametrize("window", WINDOWS)
def test_threads_in_half_open_only_probes_get_through(window: Any) -> None:
    breaker = tripped(FakeClock(), window, 2)
    gate = threading.Event()
    entered = 0
    count_lock = threading.Lock()
    start = threading.Barrier(40)

    def probe() -> str:
        nonlocal entered
        with count_lock:
            entered += 1
        gate.wait(timeout=10)
        return "ok"

    def caller() -> str:
        start.wait(timeout=10)
        try:
            return breaker.call(probe)
        except CircuitOpen:
            return "rejected"

    with ThreadPoolExecutor(max_workers=40) as pool:
        futures = [pool.submit(caller) for _ in range(40)]
        deadline = time.monotonic() + 10
        while sum(f.done() for f in futures) < 38 and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        results = [f.result(timeout=10) for f in futures]
    assert entered == 2
    assert results.count("ok") == 2
    assert results.count("rejected") == 38


@pytest.mark.parametrize(
    "options",
    [{}, {"window": TimeWindow(60)}, {"slow_call_duration": 5.0}],
    ids=["count", "time", "slow"],
)
async def test_slow_async_calls_run_concurrently(options: dict[str, Any]) -> None:
    breaker = CircuitBreaker("slow", events=EventBus(), **options)

    async def slow() -> str:
        await asyncio.sleep(0.2)
        return "ok"

    began = time.monotonic()
    results = await asyncio.gather(*(breaker.acall(slow) for _ in range(100)))
    elapsed = time.monotonic() - began
    assert results == ["ok"] * 100
    assert elapsed < 10 * 0.2  # serialised, they would take 20 s


@pytest.mark.parametrize(
    "options",
    [{}, {"window": TimeWindow(60)}, {"slow_call_duration": 5.0}],
    ids=["count", "time", "slow"],
)
def test_slow_thread_calls_run_concurrently(options: dict[str, Any]) -> None:
    breaker = CircuitBreaker("slow", events=EventBus(), **options)

    def slow() -> str:
        time.sleep(0.2)
        return "ok"

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(lambda _: breaker.call(slow), range(100)))
    elapsed = time.monotonic() - began
    assert results == ["ok"] * 100
    assert elapsed < 10 * 0.2


@pytest.mark.parametrize("window", [CountWindow(4000), TimeWindow(3600)])
def test_counts_are_exact_under_threads(window: Any) -> None:
    breaker = CircuitBreaker("busy", window=window, events=EventBus())
    breaker.force_closed()  # keep counting without tripping

    def fail() -> None:
        raise OSError

    def worker() -> None:
        for i in range(500):
            with contextlib.suppress(OSError):
                breaker.call(fail if i % 2 else int)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    snap = breaker.snapshot()
    assert (snap.calls, snap.failures) == (4000, 2000)


def test_concurrent_failures_open_once() -> None:
    events: list[Any] = []
    breaker = CircuitBreaker(
        "race", minimum_calls=50, window=CountWindow(100), events=EventBus([events.append])
    )

    def fail() -> None:
        raise OSError

    def worker() -> None:
        for _ in range(200):
            with contextlib.suppress(OSError, CircuitOpen):
                breaker.call(fail)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert breaker.state is CircuitState.OPEN
    assert [(e.old, e.new) for e in events] == [("closed", "open")]
