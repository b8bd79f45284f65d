"""DESIGN.md 3.1 invariants, for any arrival schedule, on a fake clock."""

from __future__ import annotations

import itertools
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilience.testing import FakeClock, arrivals, costs, max_admitted_in_window
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

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

limits = st.integers(1, 20)
periods = st.sampled_from([0.1, 0.25, 1.0, 3.0, 0.7])


def run(
    algorithm: Algorithm, schedule: list[tuple[float, float]]
) -> list[tuple[float, float, bool]]:
    clock = FakeClock()
    limiter = RateLimiter(algorithm, clock=clock, events=EventBus())
    out = []
    for t, cost in schedule:
        clock.set(t)
        d = limiter.try_acquire("k", cost)
        out.append((t, cost, d.allowed))
    return out


def weighted_schedules(max_cost: int = 1) -> st.SearchStrategy[list[tuple[float, float]]]:
    return arrivals(150).flatmap(
        lambda times: st.lists(costs(max_cost), min_size=len(times), max_size=len(times)).map(
            lambda cs: list(zip(times, cs, strict=True))
        )
    )


def admitted(result: list[tuple[float, float, bool]]) -> tuple[list[float], list[float]]:
    times = [t for t, _, ok in result if ok]
    weights = [c for _, c, ok in result if ok]
    return times, weights


def max_in_closed_interval(times: list[float], weights: list[float], width: float) -> float:
    """Largest admitted weight in any closed interval [t, t + width]."""
    best = 0.0
    for i, start in enumerate(times):
        total = 0.0
        for j in range(i, len(times)):
            if times[j] > start + width:
                break
            total += weights[j]
        best = max(best, total)
    return best


@SETTINGS
@given(limits, periods, weighted_schedules(3))
def test_sliding_log_admits_at_most_limit_in_any_period(
    limit: int, period: float, schedule: list[tuple[float, float]]
) -> None:
    times, weights = admitted(run(SlidingWindowLog(limit, period), schedule))
    assert max_admitted_in_window(times, period, weights) <= limit


@SETTINGS
@given(limits, periods, weighted_schedules(3))
def test_fixed_window_admits_at_most_limit_per_aligned_window(
    limit: int, period: float, schedule: list[tuple[float, float]]
) -> None:
    per_window: dict[int, float] = {}
    for t, cost, ok in run(FixedWindow(limit, period), schedule):
        if ok:
            w = math.floor(t / period)
            if t >= (w + 1) * period:
                w += 1
            per_window[w] = per_window.get(w, 0) + cost
    assert all(v <= limit for v in per_window.values())


@SETTINGS
@given(
    st.sampled_from(["token", "gcra", "police"]),
    limits,
    periods,
    st.integers(1, 10),
    weighted_schedules(3),
    st.floats(0.01, 5.0),
)
def test_bucket_algorithms_admit_at_most_burst_plus_rate(
    kind: str, limit: int, period: float, burst: int, schedule: list[tuple[float, float]], dt: float
) -> None:
    algorithm: Algorithm
    if kind == "token":
        algorithm = TokenBucket(limit, period, burst=burst)
    elif kind == "gcra":
        algorithm = GCRA(limit, period, burst=burst)
    else:
        algorithm = LeakyBucket(limit, period, capacity=burst)
    times, weights = admitted(run(algorithm, schedule))
    for width in (dt, period, 0.0):
        bound = burst + limit * width / period
        assert max_in_closed_interval(times, weights, width) <= bound + 1e-6


@SETTINGS
@given(limits, periods, st.integers(1, 6), weighted_schedules(3))
def test_sliding_counter_admits_at_most_limit_per_aligned_window_of_buckets(
    limit: int, period: float, buckets: int, schedule: list[tuple[float, float]]
) -> None:
    algorithm = SlidingWindowCounter(limit, period, buckets)
    width = period / buckets
    admitted_per_bucket: dict[int, float] = {}
    for t, cost, ok in run(algorithm, schedule):
        if ok:
            b = math.floor(t / width)
            if t >= (b + 1) * width:
                b += 1
            admitted_per_bucket[b] = admitted_per_bucket.get(b, 0) + cost
    # Any `buckets` consecutive aligned sub-buckets hold at most `limit`.
    for b in admitted_per_bucket:
        total = sum(admitted_per_bucket.get(b + i, 0) for i in range(buckets))
        assert total <= limit


def all_algorithms() -> st.SearchStrategy[Algorithm]:
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


@SETTINGS
@given(all_algorithms(), weighted_schedules(3), st.floats(0.0, 1e4), st.integers(1, 3))
def test_rejected_request_retried_alone_after_retry_after_is_admitted(
    algorithm: Algorithm, schedule: list[tuple[float, float]], offset: float, probe_cost: int
) -> None:
    clock = FakeClock(offset)
    limiter = RateLimiter(algorithm, clock=clock, events=EventBus())
    for t, cost in schedule:
        clock.set(offset + t)
        limiter.try_acquire("k", cost)
    decision = limiter.try_acquire("k", probe_cost)
    if decision.allowed:
        return
    if probe_cost > algorithm.capacity:
        assert decision.retry_after == math.inf
        return
    assert 0 < decision.retry_after < math.inf
    clock.advance(decision.retry_after)
    again = limiter.try_acquire("k", probe_cost)
    assert again.allowed, (decision, again)


@SETTINGS
@given(all_algorithms(), weighted_schedules(3))
def test_retry_after_is_zero_when_allowed_and_positive_when_rejected(
    algorithm: Algorithm, schedule: list[tuple[float, float]]
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(algorithm, clock=clock, events=EventBus())
    for t, cost in schedule:
        clock.set(t)
        d = limiter.try_acquire("k", cost)
        if d.allowed:
            assert d.retry_after == 0.0
            assert d.delay >= 0.0
        else:
            assert d.retry_after > 0.0
        assert d.remaining >= 0
        assert d.reset_after >= 0.0


@SETTINGS
@given(all_algorithms(), weighted_schedules(2))
def test_state_at_full_is_equivalent_to_a_fresh_key(
    algorithm: Algorithm, schedule: list[tuple[float, float]]
) -> None:
    """The reclamation rule: once full_at(state) <= now, decisions equal a fresh key's."""
    state = None
    for t, cost in schedule:
        state, _ = algorithm.decide(state, t, cost)
    if state is None:
        return
    later = algorithm.full_at(state)
    if not math.isfinite(later):
        return
    kept, fresh = algorithm.decide(state, later, 1)[1], algorithm.decide(None, later, 1)[1]
    assert kept.allowed == fresh.allowed
    assert kept.remaining == fresh.remaining


@SETTINGS
@given(st.integers(1, 10), periods, st.integers(1, 10), arrivals(100))
def test_shape_mode_spaces_departures_by_the_emission_interval(
    limit: int, period: float, capacity: int, times: list[float]
) -> None:
    algorithm = LeakyBucket(limit, period, capacity=capacity, mode="shape")
    clock = FakeClock()
    limiter = RateLimiter(algorithm, clock=clock, events=EventBus())
    departures = []
    for t in times:
        clock.set(t)
        d = limiter.try_acquire("k")
        if d.allowed:
            departures.append(t + d.delay)
            assert d.delay <= capacity * period / limit + 1e-9
    interval = period / limit
    for a, b in itertools.pairwise(departures):
        assert b - a >= interval - 1e-9


class NaiveCounter:
    """Reference: recount the weighted estimate from every admitted request."""

    def __init__(self, limit: int, period: float, buckets: int) -> None:
        self.limit, self.width, self.n = limit, period / buckets, buckets
        self.admitted: list[tuple[int, float]] = []

    def margin(self, now: float, cost: float) -> float:
        j = math.floor(now / self.width)
        if now >= (j + 1) * self.width:
            j += 1
        phase = (now - j * self.width) / self.width
        weighted = sum(c for b, c in self.admitted if b == j - self.n)
        total = sum(c for b, c in self.admitted if j - self.n < b <= j)
        self.j = j
        return self.limit - (weighted * (1 - phase) + total + cost)


class NaiveTokenBucket:
    """Reference: tokens as a float, refilled on every call."""

    def __init__(self, limit: int, period: float, burst: int) -> None:
        self.rate, self.burst = limit / period, burst
        self.tokens, self.last = float(burst), None

    def margin(self, now: float, cost: float) -> float:
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        return self.tokens - cost


@SETTINGS
@given(limits, periods, st.integers(1, 6), weighted_schedules(3))
def test_sliding_counter_matches_a_naive_recount(
    limit: int, period: float, buckets: int, schedule: list[tuple[float, float]]
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        SlidingWindowCounter(limit, period, buckets), clock=clock, events=EventBus()
    )
    model = NaiveCounter(limit, period, buckets)
    for t, cost in schedule:
        clock.set(t)
        margin = model.margin(t, cost)
        d = limiter.try_acquire("k", cost)
        if margin > 1e-6:
            assert d.allowed
        elif margin < -1e-6:
            assert not d.allowed, (t, cost, margin, model.j, model.admitted[-15:], schedule)
        if d.allowed:
            model.admitted.append((model.j, cost))


@SETTINGS
@given(
    st.sampled_from(["token", "gcra", "police", "shape"]),
    limits,
    periods,
    st.integers(1, 10),
    weighted_schedules(3),
)
def test_bucket_algorithms_match_a_naive_token_bucket(
    kind: str, limit: int, period: float, burst: int, schedule: list[tuple[float, float]]
) -> None:
    algorithm: Algorithm = {
        "token": lambda: TokenBucket(limit, period, burst),
        "gcra": lambda: GCRA(limit, period, burst),
        "police": lambda: LeakyBucket(limit, period, burst),
        "shape": lambda: LeakyBucket(limit, period, burst, mode="shape"),
    }[kind]()
    clock = FakeClock()
    limiter = RateLimiter(algorithm, clock=clock, events=EventBus())
    model = NaiveTokenBucket(limit, period, burst)
    for t, cost in schedule:
        clock.set(t)
        margin = model.margin(t, cost)
        d = limiter.try_acquire("k", cost)
        if margin > 1e-6:
            assert d.allowed
        elif margin < -1e-6:
            assert not d.allowed
        if d.allowed:
            model.tokens -= cost


@SETTINGS
@given(all_algorithms(), weighted_schedules(3), st.integers(1, 3), st.booleans())
def test_retry_after_is_the_shortest_wait(
    algorithm: Algorithm, schedule: list[tuple[float, float]], probe_cost: int, unit: bool
) -> None:
    """Just before ``now + retry_after`` the same request is still rejected: the wait is exact."""
    import copy

    state = None
    now = 0.0
    for t, cost in schedule:
        now = t
        state, _ = algorithm.decide(state, t, 1 if unit else cost)
    state, decision = algorithm.decide(state, now, probe_cost)
    if decision.allowed or not math.isfinite(decision.retry_after):
        return
    later = now + decision.retry_after
    assert algorithm.decide(copy.deepcopy(state), later, probe_cost)[1].allowed
    earlier = now + math.nextafter(decision.retry_after, 0.0)
    if earlier < later:
        assert not algorithm.decide(copy.deepcopy(state), earlier, probe_cost)[1].allowed
