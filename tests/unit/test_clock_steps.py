"""A clock stepped back one hour (NTP) must not lock a client out for the hour.

The numbers of issue 9 item 2, on the memory store: before the fix a GCRA,
token or leaky-bucket key used once was refused for ~3,552 s, an exhausted
fixed window or sliding log for 3,620-3,660 s, and a breaker with
``open_duration=30`` answered ``retry_after=3630``.  After a backward step a
client waits at most what it could have waited without it.
"""

from __future__ import annotations

import math

import pytest

from resilience import (
    GCRA,
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    FixedWindow,
    LeakyBucket,
    RateLimiter,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from resilience.events import EventBus
from resilience.ratelimit.algorithms.base import Algorithm
from resilience.testing import FakeClock

T0 = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT: 20 s into a minute, at Unix-time scale
HOUR = 3600.0


def limiter(algorithm: Algorithm, clock: FakeClock) -> RateLimiter:
    return RateLimiter(algorithm, clock=clock, events=EventBus())


@pytest.mark.parametrize(
    "algorithm",
    [
        GCRA(10, 60.0),
        TokenBucket(10, 60.0),
        LeakyBucket(10, 60.0),
        LeakyBucket(10, 60.0, mode="shape"),
    ],
    ids=lambda a: f"{a.kind}-{getattr(a, 'mode', '')}",
)
def test_bucket_used_once_then_stepped_back_an_hour_waits_one_interval(
    algorithm: Algorithm,
) -> None:
    clock = FakeClock(T0)
    lim = limiter(algorithm, clock)
    assert lim.try_acquire("k").allowed
    clock.step_back(HOUR)
    one = lim.try_acquire("k")  # was refused for 3,552 s
    assert not one.allowed  # empty as of now: the bucket cannot know how much had refilled
    # One interval, period / limit (less the few microseconds of float slack the
    # admission test allows at Unix-time magnitudes).
    assert 6.0 - 1e-4 < one.retry_after <= 6.0
    assert one.reset_after == 60.0
    full = lim.try_acquire("k", cost=10)  # was 3,606 s
    assert not full.allowed and 60.0 - 1e-4 < full.retry_after <= 60.0  # one period
    clock.advance(one.retry_after)
    assert lim.try_acquire("k").allowed  # retry_after stays exact after the step


def test_fixed_window_exhausted_then_stepped_back_an_hour_waits_at_most_a_period() -> None:
    clock = FakeClock(T0)
    lim = limiter(FixedWindow(10, 60.0), clock)
    assert all(lim.try_acquire("k").allowed for _ in range(10))
    clock.step_back(HOUR)
    refused = lim.try_acquire("k")  # was 3,640 s (the rest of the window plus the hour)
    assert not refused.allowed and refused.retry_after == 60.0
    clock.advance(59.0)
    assert not lim.try_acquire("k").allowed  # the count is kept, never forgiven early
    clock.advance(1.0)
    assert lim.try_acquire("k").allowed


def test_sliding_log_exhausted_then_stepped_back_an_hour_waits_at_most_a_period() -> None:
    clock = FakeClock(T0)
    lim = limiter(SlidingWindowLog(10, 60.0), clock)
    assert all(lim.try_acquire("k").allowed for _ in range(10))
    clock.step_back(HOUR)
    refused = lim.try_acquire("k")  # was 3,660 s
    assert not refused.allowed and refused.retry_after == 60.0
    clock.advance(refused.retry_after)
    assert lim.try_acquire("k").allowed


def test_sliding_counter_stepped_back_an_hour_waits_at_most_period_plus_a_sub_bucket() -> None:
    clock = FakeClock(T0)
    lim = limiter(SlidingWindowCounter(10, 60.0, buckets=4), clock)
    assert all(lim.try_acquire("k").allowed for _ in range(10))
    clock.step_back(HOUR)
    refused = lim.try_acquire("k")  # was 3,656.5 s
    assert not refused.allowed
    # T0 is 5 s into a 15 s sub-bucket, and so is T0 - 1 h: at most 60 + 10 s.
    assert 0 < refused.retry_after <= 70.0
    clock.advance(refused.retry_after)
    assert lim.try_acquire("k").allowed


@pytest.mark.parametrize("store", ["memory", "shared-memory"])
def test_open_breaker_stepped_back_an_hour_waits_at_most_open_duration(store: str) -> None:
    from resilience.breaker import MemoryBreakerStore

    clock = FakeClock(T0)
    shared = MemoryBreakerStore() if store == "shared-memory" else None
    breaker = CircuitBreaker(
        "svc",
        consecutive_failures=1,
        open_duration=30.0,
        clock=clock,
        events=EventBus(),
        store=shared,
    )
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    assert breaker.state is CircuitState.OPEN
    clock.step_back(HOUR)
    assert breaker.snapshot().retry_after == 30.0  # was 3,630
    with pytest.raises(CircuitOpen) as refused:
        breaker.call(int)
    assert refused.value.retry_after == 30.0  # was 3,630
    clock.advance(29.0)
    with pytest.raises(CircuitOpen) as still:
        breaker.call(int)
    assert still.value.retry_after == pytest.approx(1.0)
    clock.advance(1.0)
    assert breaker.call(int) == 0  # the probe runs open_duration after the step
    assert breaker.state is CircuitState.CLOSED


def test_forced_open_breaker_is_not_moved_by_a_step() -> None:
    clock = FakeClock(T0)
    breaker = CircuitBreaker("held", open_duration=30.0, clock=clock, events=EventBus())
    breaker.force_open()
    clock.step_back(HOUR)
    with pytest.raises(CircuitOpen) as refused:
        breaker.call(int)
    assert refused.value.retry_after == 30.0
    clock.advance(10 * HOUR)
    assert breaker.state is CircuitState.OPEN  # held until reset, whatever the clock does


def test_fake_clock_step_back_validates() -> None:
    clock = FakeClock(10.0)
    clock.step_back(4.0)
    assert clock.monotonic() == 6.0
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="step_back"):
            clock.step_back(bad)


@pytest.mark.parametrize(
    "algorithm",
    [
        GCRA(2, 60.0),
        FixedWindow(2, 60.0),
        SlidingWindowLog(2, 60.0),
        SlidingWindowCounter(2, 60.0, 4),
    ],
    ids=lambda a: a.kind,
)
def test_a_full_memory_store_refuses_new_keys_no_longer_after_a_step(algorithm: Algorithm) -> None:
    """max_keys reached and every key limited: a new key waits for the first reclaimable one."""
    from resilience import MemoryStore

    clock = FakeClock(T0)
    store = MemoryStore(max_keys=2)
    lim = RateLimiter(algorithm, store=store, clock=clock, events=EventBus())
    for key in ("a", "b"):
        assert lim.try_acquire(key, cost=2).allowed
    most = algorithm.period * (1.25 if isinstance(algorithm, SlidingWindowCounter) else 1.0)
    assert algorithm.horizon == most
    forward = lim.try_acquire("c")
    assert not forward.allowed and 0 < forward.retry_after <= most
    clock.step_back(HOUR)
    refused = lim.try_acquire("c")  # was 3,600 s more than on the forward clock
    assert not refused.allowed and 0 < refused.retry_after <= most
    clock.advance(refused.retry_after)
    assert lim.try_acquire("c").allowed  # a key was reclaimed: not waiting out the hour
