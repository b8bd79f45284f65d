"""Bad configuration raises ValueError naming the field; rate strings parse or fail clearly."""

from __future__ import annotations

import math

import pytest

from resilience import (
    GCRA,
    FixedWindow,
    LeakyBucket,
    MemoryStore,
    RateLimiter,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
    parse_policy,
    parse_rate,
    rate_limit,
)

ALL = [TokenBucket, GCRA, LeakyBucket, FixedWindow, SlidingWindowLog, SlidingWindowCounter]
BAD_NUMBERS = [0, -1, math.nan, math.inf, -math.inf, "10", None, True, 2.5]


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("limit", BAD_NUMBERS)
def test_bad_limit_names_the_field(cls: type, limit: object) -> None:
    with pytest.raises(ValueError, match="limit"):
        cls(limit, 1.0)


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("period", [0, -1.0, math.nan, math.inf, "1s", None, True])
def test_bad_period_names_the_field(cls: type, period: object) -> None:
    with pytest.raises(ValueError, match="period"):
        cls(10, period)


@pytest.mark.parametrize("cls", [TokenBucket, GCRA])
@pytest.mark.parametrize("burst", [0, -3, 0.5, math.nan, math.inf])
def test_burst_below_one_or_not_finite(cls: type, burst: object) -> None:
    with pytest.raises(ValueError, match="burst"):
        cls(10, 1.0, burst=burst)


def test_leaky_bucket_capacity_and_mode() -> None:
    with pytest.raises(ValueError, match="capacity"):
        LeakyBucket(10, 1.0, capacity=0)
    with pytest.raises(ValueError, match="mode"):
        LeakyBucket(10, 1.0, mode="drip")  # type: ignore[arg-type]


def test_sliding_counter_buckets() -> None:
    with pytest.raises(ValueError, match="buckets"):
        SlidingWindowCounter(10, 1.0, buckets=0)
    with pytest.raises(ValueError, match="buckets"):
        SlidingWindowCounter(10, 1.0, buckets=10**9)


def test_integral_floats_are_accepted() -> None:
    assert TokenBucket(10.0, 1).limit == 10  # type: ignore[arg-type]


@pytest.mark.parametrize("cost", [0, -1, math.nan, math.inf, "1", None, True])
def test_bad_cost_names_the_field(cost: object) -> None:
    limiter = RateLimiter(TokenBucket(10))
    with pytest.raises(ValueError, match="cost"):
        limiter.try_acquire("k", cost)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cost"):
        rate_limit(limiter, cost=cost)  # type: ignore[arg-type]


def test_limiter_options() -> None:
    with pytest.raises(ValueError, match="on_store_error"):
        RateLimiter(TokenBucket(1), on_store_error="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="algorithm"):
        RateLimiter("gcra")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        RateLimiter(TokenBucket(1), name="")
    with pytest.raises(ValueError, match="timeout"):
        RateLimiter(TokenBucket(1)).acquire(timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        RateLimiter(TokenBucket(1)).acquire(timeout=math.nan)
    with pytest.raises(ValueError, match="max_keys"):
        MemoryStore(max_keys=0)
    with pytest.raises(ValueError, match="monotonic"):
        RateLimiter(TokenBucket(1), clock=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/minute", (100, 60.0)),
        ("10/s", (10, 1.0)),
        ("5 per 2 seconds", (5, 2.0)),
        ("1000/5m", (1000, 300.0)),
        ("3/hour", (3, 3600.0)),
        ("7 / day", (7, 86400.0)),
        ("250/100ms", (250, 0.1)),
        ("  42 PER SECOND ", (42, 1.0)),
    ],
)
def test_parse_rate(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", ["", "100", "/minute", "0/minute", "10/fortnight", "ten/s", "-1/s", "10/0s", "1e3/s", 5]
)
def test_parse_rate_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)  # type: ignore[arg-type]


def test_parse_policy_round_trips() -> None:
    for text, cls in [
        ("gcra:100/minute,burst=20", GCRA),
        ("token-bucket:10/s", TokenBucket),
        ("leaky-shape:10/s,capacity=5", LeakyBucket),
        ("leaky_bucket:10/s,mode=shape", LeakyBucket),
        ("fixed:10/s", FixedWindow),
        ("sliding-log:10/s", SlidingWindowLog),
        ("sliding-counter:10/s,buckets=4", SlidingWindowCounter),
    ]:
        algorithm = parse_policy(text)
        assert isinstance(algorithm, cls)
        assert parse_policy(algorithm.spec()) == algorithm
    assert parse_policy("gcra:100/minute,burst=20").params()["burst"] == 20


@pytest.mark.parametrize(
    "text",
    [
        "gcra",
        "nope:10/s",
        "gcra:10/s,burst",
        "gcra:10/s,burst=x",
        "fixed:10/s,burst=3",
        "gcra:10/s,burst=2,burst=3",
    ],
)
def test_parse_policy_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_policy(text)
