"""Real threads and tasks behind a barrier on a frozen clock admit exactly the capacity."""

from __future__ import annotations

import asyncio
import threading

import pytest

from resilience.testing import FakeClock
from tests.ratelimit_kit import (
    GCRA,
    Algorithm,
    EventBus,
    FixedWindow,
    LeakyBucket,
    RateLimiter,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)

CAPACITY = 500
ALGORITHMS = [
    TokenBucket(CAPACITY, 60.0),
    GCRA(10, 60.0, burst=CAPACITY),
    LeakyBucket(CAPACITY, 60.0),
    LeakyBucket(10, 60.0, capacity=CAPACITY, mode="shape"),
    FixedWindow(CAPACITY, 3600.0),
    SlidingWindowLog(CAPACITY, 60.0),
    SlidingWindowCounter(CAPACITY, 60.0, buckets=4),
]


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.kind)
def test_threads_admit_exactly_the_capacity(algorithm: Algorithm) -> None:
    limiter = RateLimiter(algorithm, clock=FakeClock(10.0), events=EventBus())
    barrier = threading.Barrier(16)
    admitted = [0] * 16

    def worker(i: int) -> None:
        barrier.wait(timeout=10)
        for _ in range(1000):
            if limiter.try_acquire("shared").allowed:
                admitted[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(admitted) == CAPACITY


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.kind)
async def test_tasks_admit_exactly_the_capacity(algorithm: Algorithm) -> None:
    limiter = RateLimiter(algorithm, clock=FakeClock(10.0), events=EventBus())
    start = asyncio.Event()

    async def one() -> bool:
        await start.wait()
        return (await limiter.atry_acquire("shared")).allowed

    tasks = [asyncio.create_task(one()) for _ in range(1000)]
    await asyncio.sleep(0)
    start.set()
    results = await asyncio.gather(*tasks)
    assert sum(results) == CAPACITY


async def test_many_cancelled_waiters_consume_nothing() -> None:
    clock = FakeClock(auto_advance=False)
    limiter = RateLimiter(TokenBucket(5, 1.0), clock=clock, events=EventBus())
    for _ in range(5):
        assert limiter.try_acquire("k")
    waiters = [asyncio.create_task(limiter.aacquire("k")) for _ in range(50)]
    for _ in range(200):
        if clock.pending == 50:
            break
        await asyncio.sleep(0)
    for w in waiters:
        w.cancel()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    clock.advance(1.0)
    assert sum(limiter.try_acquire("k").allowed for _ in range(10)) == 5


def test_threads_waiting_with_acquire_all_get_through() -> None:
    clock = FakeClock()
    limiter = RateLimiter(GCRA(100, 1.0, burst=1), clock=clock, events=EventBus())
    barrier = threading.Barrier(8)
    done: list[int] = []

    def worker() -> None:
        barrier.wait(timeout=10)
        for _ in range(20):
            limiter.acquire("k", timeout=10.0)
            done.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(done) == 160
