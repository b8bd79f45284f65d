"""Clocks that step backwards, any number of times, by any amount (NTP, skewed hosts).

Invariant (issue 9 item 2): a refusal never outlasts what the algorithm
could answer on a clock that only moves forward: ``cost * period / limit``
for the bucket algorithms, ``period`` for the fixed window and the sliding
log, ``period`` plus one sub-bucket for the sliding counter, and
``open_duration`` for a breaker.  ``retry_after`` stays exact too: retrying
alone after it, on the stepped clock, is admitted.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilience import (
    GCRA,
    FixedWindow,
    LeakyBucket,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from resilience.breaker import (
    BreakerConfig,
    CircuitState,
    CountWindow,
    MemoryBreakerTable,
    Permit,
    TimeWindow,
)
from resilience.ratelimit.algorithms.base import Algorithm
from resilience.testing import arrivals, costs

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

limits = st.integers(1, 20)
periods = st.sampled_from([0.1, 0.25, 1.0, 3.0, 0.7, 60.0])
# Near zero (monotonic clocks) and near the Unix time Redis TIME returns.
offsets = st.one_of(st.just(0.0), st.floats(0.0, 1e5), st.floats(1.6e9, 2.1e9))
# Backward steps: skew-sized, NTP-sized (an hour, a day) and anything in between.
back_steps = st.one_of(
    st.floats(0.0, 2.0),
    st.sampled_from([3600.0, 86_400.0, 1e6]),
    st.floats(0.0, 1e7),
)


def algorithms() -> st.SearchStrategy[Algorithm]:
    return st.one_of(
        st.builds(TokenBucket, limits, periods, st.integers(1, 10)),
        st.builds(GCRA, limits, periods, st.integers(1, 10)),
        st.builds(
            LeakyBucket, limits, periods, st.integers(1, 10), st.sampled_from(["police", "shape"])
        ),
        st.builds(FixedWindow, limits, periods),
        st.builds(SlidingWindowLog, limits, periods),
        st.builds(SlidingWindowCounter, limits, periods, st.integers(1, 6)),
    )


def bounds(algorithm: Algorithm, cost: float) -> tuple[float, float]:
    """The longest ``retry_after`` (for ``cost``) and ``reset_after`` a forward clock can see."""
    period = algorithm.period
    if isinstance(algorithm, TokenBucket | GCRA | LeakyBucket):
        return cost * algorithm.interval, algorithm.capacity * algorithm.interval
    if isinstance(algorithm, SlidingWindowCounter):
        most = period + period / algorithm.buckets
        return most, most
    return period, period


def slack(now: float, bound: float) -> float:
    """Last-place rounding of ``target - now`` (a few ulps of the operands)."""
    return 64 * math.ulp(abs(now) + bound)


@st.composite
def stepped_schedules(draw: st.DrawFn) -> list[tuple[float, float]]:
    """Forward arrivals, with the clock stepped back before some of them (cumulatively)."""
    times = draw(arrivals(100))
    weights = draw(st.lists(costs(3), min_size=len(times), max_size=len(times)))
    back = 0.0
    plan = []
    for t, cost in zip(times, weights, strict=True):
        if draw(st.integers(0, 9)) == 0:
            back += draw(back_steps)
        plan.append((t - back, cost))
    return plan


@SETTINGS
@given(algorithms(), stepped_schedules(), offsets, st.integers(1, 3))
def test_no_refusal_outlasts_the_forward_clock_bound_after_backward_steps(
    algorithm: Algorithm, schedule: list[tuple[float, float]], offset: float, probe_cost: int
) -> None:
    state: Any = None
    now = offset
    for t, cost in schedule:
        now = offset + t
        state, decision = algorithm.decide(state, now, cost)
        retry_bound, reset_bound = bounds(algorithm, cost)
        if not decision.allowed and cost <= algorithm.capacity:
            assert 0 < decision.retry_after <= retry_bound + slack(now, retry_bound), (now, cost)
        assert 0 <= decision.reset_after <= reset_bound + slack(now, reset_bound), (now, cost)
        assert decision.delay <= reset_bound + slack(now, reset_bound)
    # retry_after is still exact on the stepped clock: retried alone after it, admitted.
    state, decision = algorithm.decide(state, now, probe_cost)
    if decision.allowed or probe_cost > algorithm.capacity:
        return
    assert decision.retry_after <= bounds(algorithm, probe_cost)[0] + slack(now, algorithm.period)
    assert algorithm.decide(state, now + decision.retry_after, probe_cost)[1].allowed


# -- the breaker ----------------------------------------------------------------------------

breaker_configs = st.builds(
    BreakerConfig.build,
    failure_rate_threshold=st.sampled_from([0.5, 1.0]),
    minimum_calls=st.integers(1, 3),
    window=st.one_of(
        st.builds(CountWindow, st.integers(3, 5)),
        st.builds(TimeWindow, st.sampled_from([1.0, 10.0]), st.integers(1, 4)),
    ),
    consecutive_failures=st.one_of(st.none(), st.integers(1, 3)),
    open_duration=st.sampled_from([0.3, 1.0, 30.0, 60.0]),
    half_open_max_calls=st.integers(1, 3),
)
breaker_ops = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.booleans()),
        st.tuples(st.just("call"), st.booleans()),
        st.tuples(st.just("advance"), st.sampled_from([0.0, 0.1, 0.5, 2.0, 40.0])),
        st.tuples(st.just("back"), back_steps),
        st.tuples(st.just("snapshot")),
        st.tuples(st.sampled_from(["force_open", "reset"])),
    ),
    min_size=5,
    max_size=80,
)


def check_permit(permit: Permit, open_duration: float, now: float) -> None:
    if not permit.allowed:
        assert 0 < permit.retry_after <= open_duration + slack(now, open_duration), (permit, now)


@SETTINGS
@given(breaker_configs, breaker_ops, offsets)
def test_breaker_never_refuses_longer_than_open_duration_after_backward_steps(
    config: BreakerConfig, ops: list[tuple[Any, ...]], offset: float
) -> None:
    now = offset
    table = MemoryBreakerTable(config, lambda: now)
    duration = config.open_duration
    for op in ops:
        kind = op[0]
        if kind == "call":
            permit = table.acquire(now)
            check_permit(permit, duration, now)
            if permit.allowed:
                table.record(permit, op[1], 0.0, now)
        elif kind == "advance":
            now += op[1]
        elif kind == "back":
            now -= op[1]
        elif kind == "snapshot":
            snap = table.snapshot(now)
            assert 0 <= snap.retry_after <= duration + slack(now, duration), (snap, now)
        elif kind == "force_open":
            table.force(CircuitState.OPEN, now)
        else:
            table.reset(now)
    # And the wait is honest: after retry_after, an unheld open circuit lets a probe in.
    permit = table.acquire(now)
    if permit.allowed or permit.state is not CircuitState.OPEN or table.snapshot(now).held:
        return
    assert table.acquire(now + permit.retry_after).allowed


@SETTINGS
@given(algorithms(), stepped_schedules(), offsets, back_steps, st.integers(1, 3))
def test_settle_is_what_the_next_decision_sees(
    algorithm: Algorithm,
    schedule: list[tuple[float, float]],
    offset: float,
    back: float,
    probe_cost: int,
) -> None:
    """Stores reclaim by ``full_at(settle(state, now))``: it must agree with ``decide``."""
    import copy

    state: Any = None
    now = offset
    for t, cost in schedule:
        now = offset + t
        state, _ = algorithm.decide(state, now, cost)
    if state is None:
        return
    now -= back
    settled = algorithm.settle(copy.deepcopy(state), now)
    assert algorithm.full_at(settled) - now <= algorithm.horizon + slack(now, algorithm.horizon)
    direct = algorithm.decide(copy.deepcopy(state), now, probe_cost)
    via = algorithm.decide(settled, now, probe_cost)
    assert direct[1] == via[1]
    assert algorithm.full_at(direct[0]) == algorithm.full_at(via[0])
