"""What the RateLimit headers advertise is what the limiter does (issue 9, item 7).

A client that trusts ``RateLimit-Policy: q, w`` sends ``q`` requests at once,
waits ``w`` seconds and does it again: every one of them must be admitted,
for every algorithm, any parameters, any phase of the clock.  And ``t`` (the
effective window of ``RateLimit``) never exceeds ``w``.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilience.testing import FakeClock
from resilience.web.headers import RateLimitHeaders
from tests.integration.servers import parse_sf_list
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

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

limits = st.integers(1, 30)
periods = st.sampled_from([0.1, 0.25, 0.5, 0.7, 1.0, 1.5, 3.0, 30.0, 60.0, 86400.0])


@st.composite
def algorithms(draw: st.DrawFn) -> Algorithm:
    limit = draw(limits)
    period = draw(periods)
    kind = draw(st.sampled_from(["gcra", "token", "leaky", "fixed", "log", "counter"]))
    burst = draw(st.none() | st.integers(1, 40))
    if kind == "gcra":
        return GCRA(limit, period, burst=burst)
    if kind == "token":
        return TokenBucket(limit, period, burst=burst)
    if kind == "leaky":
        return LeakyBucket(limit, period, capacity=burst)
    if kind == "fixed":
        return FixedWindow(limit, period)
    if kind == "log":
        return SlidingWindowLog(limit, period)
    return SlidingWindowCounter(limit, period, buckets=draw(st.integers(1, 12)))


def advertised(headers: RateLimitHeaders) -> tuple[int, int]:
    ((params),) = parse_sf_list(dict(headers.text(_any_decision()))["RateLimit-Policy"]).values()
    return int(params["q"]), int(params["w"])


def _any_decision() -> object:
    from resilience import Decision

    return Decision(True, 1, 0, 0.0, 0.0)


@SETTINGS
@given(
    algorithm=algorithms(),
    start=st.floats(0.0, 1e6, allow_nan=False),
    gaps=st.lists(st.floats(0.0, 5.0, allow_nan=False), min_size=1, max_size=6),
)
def test_a_client_that_trusts_q_and_w_is_never_refused(
    algorithm: Algorithm, start: float, gaps: list[float]
) -> None:
    headers = RateLimitHeaders.for_algorithm("api", algorithm, "ietf")
    quota, window = advertised(headers)
    assert quota >= 1 or algorithm.capacity < 1
    assert quota / window <= algorithm.limit / algorithm.period + 1e-9  # never a higher rate
    clock = FakeClock(start)
    limiter = RateLimiter(algorithm, clock=clock, events=EventBus())
    for batch, extra in enumerate(gaps):
        if batch:
            clock.advance(window + extra * window)
        for sent in range(quota):
            decision = limiter.try_acquire("client")
            assert decision.allowed, (batch, sent, quota, window, clock.monotonic(), decision)
            assert decision.delay <= window
            (params,) = parse_sf_list(dict(headers.text(decision))["RateLimit"]).values()
            assert 0 <= params["t"] <= window


@SETTINGS
@given(
    algorithm=algorithms(),
    start=st.floats(0.0, 1e6, allow_nan=False),
    steps=st.lists(
        st.tuples(st.floats(0.0, 40.0, allow_nan=False), st.integers(1, 5)), max_size=30
    ),
)
def test_t_never_exceeds_the_advertised_window(
    algorithm: Algorithm, start: float, steps: list[tuple[float, int]]
) -> None:
    headers = RateLimitHeaders.for_algorithm("api", algorithm, "both")
    _, window = advertised(headers)
    clock = FakeClock(start)
    limiter = RateLimiter(algorithm, clock=clock, events=EventBus())
    for gap, burst in steps:
        clock.advance(gap)
        for _ in range(burst):
            values = dict(headers.text(limiter.try_acquire("client")))
            (params,) = parse_sf_list(values["RateLimit"]).values()
            assert 0 <= params["t"] <= window
            assert int(values["X-RateLimit-Reset"]) == params["t"]


def test_the_reported_cases() -> None:
    """GCRA(2, 0.5) advertised q=4 (only 2 pass at once); SlidingWindowCounter(2, 30) said t=41."""
    assert advertised(RateLimitHeaders.for_algorithm("x", GCRA(2, 0.5), "ietf")) == (2, 1)
    counter = SlidingWindowCounter(2, 30.0)
    headers = RateLimitHeaders.for_algorithm("x", counter, "ietf")
    quota, window = advertised(headers)
    clock = FakeClock(19.0)  # 19 s into an aligned 30 s window
    limiter = RateLimiter(counter, clock=clock, events=EventBus())
    (params,) = parse_sf_list(dict(headers.text(limiter.try_acquire("k")))["RateLimit"]).values()
    assert params["t"] <= window and quota == 2
