"""The Tally a metrics exporter reads agrees with the decisions, for any schedule.

For every algorithm, any arrival schedule and costs, sync or async: the
limiter's ``allowed`` and ``rejected`` counts equal the number of allowed and
rejected decisions it returned (so ``resilience_decisions_total`` is what
the callers saw).  Same for a breaker driven by any success/failure sequence.
"""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilience import (
    GCRA,
    CircuitBreaker,
    CircuitOpen,
    FixedWindow,
    LeakyBucket,
    RateLimiter,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from resilience.events import EventBus
from resilience.testing import FakeClock, arrivals, costs

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

algorithms = st.sampled_from(
    [
        lambda: TokenBucket(3, 1.0),
        lambda: GCRA(3, 1.0, burst=2),
        lambda: LeakyBucket(3, 1.0),
        lambda: LeakyBucket(3, 1.0, mode="shape"),
        lambda: FixedWindow(3, 1.0),
        lambda: SlidingWindowLog(3, 1.0),
        lambda: SlidingWindowCounter(3, 1.0),
    ]
)


@SETTINGS
@given(algorithms, arrivals(max_size=60), st.data(), st.booleans())
def test_limiter_tally_matches_decisions(make, times, data, use_async) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    limiter = RateLimiter(make(), clock=clock, events=EventBus())
    allowed = 0
    for t in times:
        clock.set(t)
        cost = data.draw(costs(3))
        key = data.draw(st.sampled_from(["a", "b"]))
        if use_async:
            decision = asyncio.run(limiter.atry_acquire(key, cost))
        else:
            decision = limiter.try_acquire(key, cost)
        allowed += decision.allowed
    assert limiter.tally.allowed == allowed
    assert limiter.tally.rejected == len(times) - allowed


@SETTINGS
@given(st.lists(st.tuples(st.booleans(), st.floats(0.0, 5.0)), max_size=60))
def test_breaker_tally_matches_what_callers_saw(steps: list[tuple[bool, float]]) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "b", consecutive_failures=2, open_duration=3.0, clock=clock, events=EventBus()
    )
    ran = refused = 0

    def call(fail: bool) -> None:
        if fail:
            raise RuntimeError("down")

    for fail, gap in steps:
        clock.advance(gap)
        try:
            breaker.call(call, fail)
            ran += 1
        except CircuitOpen:
            refused += 1
        except RuntimeError:
            ran += 1
    assert (breaker.tally.allowed, breaker.tally.rejected) == (ran, refused)
