"""Each policy's Tally counts its decisions on every path (fused memory path, decorator, permit)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from resilience import Bulkhead, CircuitBreaker, EventBus, FixedWindow, RateLimiter
from resilience.errors import BulkheadFull, CircuitOpen
from resilience.metrics import Tally, Timed, Tracker
from resilience.testing import FakeClock


def test_limiter_counts_allowed_and_rejected() -> None:
    limiter = RateLimiter(FixedWindow(3, 60.0), clock=FakeClock(), events=EventBus())
    for _ in range(5):
        limiter.try_acquire("k")
    assert (limiter.tally.allowed, limiter.tally.rejected) == (3, 2)


async def test_limiter_async_path_counts() -> None:
    limiter = RateLimiter(FixedWindow(2, 60.0), clock=FakeClock(), events=EventBus())
    for _ in range(3):
        await limiter.atry_acquire("k")
    assert (limiter.tally.allowed, limiter.tally.rejected) == (2, 1)


def test_limiter_tally_is_exact_under_threads() -> None:
    limiter = RateLimiter(FixedWindow(1000, 60.0), clock=FakeClock(), events=EventBus())
    barrier = threading.Barrier(4)

    def hammer() -> None:
        barrier.wait()
        for _ in range(500):
            limiter.try_acquire("shared")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert (limiter.tally.allowed, limiter.tally.rejected) == (1000, 1000)


def test_breaker_counts_every_entry_point() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("b", consecutive_failures=1, clock=clock, events=EventBus())
    breaker.call(lambda: 1)

    @breaker
    def boom() -> None:
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        boom()
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: 1)
    permit = breaker.permit()
    assert not permit.allowed
    assert (breaker.tally.allowed, breaker.tally.rejected) == (2, 2)


async def test_bulkhead_counts_admissions_queue_and_rejections() -> None:
    bulkhead = Bulkhead("h", max_concurrent=1, max_queue=1, queue_timeout=5.0, events=EventBus())
    gate = asyncio.Event()

    async def hold() -> None:
        await gate.wait()

    first = asyncio.create_task(bulkhead.acall(hold))
    await asyncio.sleep(0)
    second = asyncio.create_task(bulkhead.acall(hold))  # queued, admitted later
    await asyncio.sleep(0)
    with pytest.raises(BulkheadFull):
        await bulkhead.acall(hold)
    gate.set()
    await asyncio.gather(first, second)
    assert (bulkhead.tally.allowed, bulkhead.tally.rejected) == (2, 1)


def test_tracker_sums_policies_sharing_a_name_and_events() -> None:
    a = RateLimiter(FixedWindow(1, 60.0), name="api", clock=FakeClock(), events=EventBus())
    b = RateLimiter(FixedWindow(1, 60.0), name="api", clock=FakeClock(), events=EventBus())
    tracker = Tracker()
    tracker.track(a, b, a)  # tracking twice counts once
    a.try_acquire()
    b.try_acquire()
    b.try_acquire()
    tracker.count("idempotency", "orders", "replayed")
    assert tracker.decisions() == {
        ("rate_limiter", "api", "allowed"): 2,
        ("rate_limiter", "api", "rejected"): 1,
        ("idempotency", "orders", "replayed"): 1,
    }


def test_timed_reports_outcomes() -> None:
    seen: list[tuple[str, str, float]] = []
    clock = FakeClock()
    timed = Timed("t", lambda *a: seen.append(a), clock=clock)

    def slow() -> int:
        clock.advance(0.25)
        return 1

    timed.call(slow)
    with pytest.raises(ValueError):
        timed.call(lambda: int("x"))
    with pytest.raises(CircuitOpen):
        timed.call(lambda: (_ for _ in ()).throw(CircuitOpen("b", 1.0)))
    assert seen == [("t", "ok", 0.25), ("t", "error", 0.0), ("t", "rejected", 0.0)]
    with pytest.raises(ValueError, match="name"):
        Timed("", lambda *a: None)
    assert repr(Tally()) == "Tally(allowed=0, rejected=0)"
