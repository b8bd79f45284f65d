"""Across processes: 4 processes x 500 attempts on one key admit exactly ``limit``.

Each decision is one atomic script, so concurrent processes can neither both
take the last unit (double admission) nor overwrite each other's update (lost
update).  Time is the server's: one timeline for every process.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier

import pytest

from resilience.redis import RedisStore
from resilience.redis.testing import RedisServer
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

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PROCESSES = 4
ATTEMPTS = 500
LIMIT = 100
YEAR = 2.0**36  # ~2,200 years: nothing refills, no aligned window ends, while the test runs


def algorithms() -> list[Algorithm]:
    return [
        TokenBucket(LIMIT, YEAR),
        GCRA(LIMIT, YEAR),
        LeakyBucket(LIMIT, YEAR),
        LeakyBucket(LIMIT, YEAR, mode="shape"),
        # One window of ten years, aligned on the Unix epoch: no run straddles two.
        FixedWindow(LIMIT, 10 * YEAR),
        SlidingWindowLog(LIMIT, YEAR),
        SlidingWindowCounter(LIMIT, YEAR, buckets=10),
    ]


def worker(
    url: str, barrier: Barrier, results: multiprocessing.Queue[list[tuple[int, int]]]
) -> None:
    store = RedisStore.from_url(url, timeout=5.0)  # generous: 4 busy processes on 2 cores
    out = []
    for i, algorithm in enumerate(algorithms()):
        limiter = RateLimiter(algorithm, store=store, name=f"p{i}", events=EventBus())
        barrier.wait(timeout=60)  # start each algorithm's race together
        admitted = sum(limiter.try_acquire("shared").allowed for _ in range(ATTEMPTS))
        out.append((admitted, limiter.store_errors))
    store.close()
    results.put(out)


def test_four_processes_admit_exactly_the_limit(redis_server: RedisServer, redis_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results: multiprocessing.Queue[list[tuple[int, int]]] = ctx.Queue()
    processes = [
        ctx.Process(target=worker, args=(redis_url, barrier, results)) for _ in range(PROCESSES)
    ]
    for p in processes:
        p.start()
    try:
        per_process = [results.get(timeout=120) for _ in processes]
    finally:
        for p in processes:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join(timeout=10)
    for i, algorithm in enumerate(algorithms()):
        admitted = [r[i][0] for r in per_process]
        assert sum(r[i][1] for r in per_process) == 0, f"store errors for {algorithm!r}"
        assert sum(admitted) == LIMIT, f"{algorithm!r}: {admitted}"
