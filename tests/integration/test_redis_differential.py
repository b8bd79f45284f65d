"""Differential property test: Redis (clock="client") and memory give identical decisions.

DESIGN.md principle 3: an algorithm behaves identically in every store.  For
any arrival schedule (times and costs, at any clock offset) every field of
every ``Decision`` must be equal, floats bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilience.redis import RedisStore
from resilience.redis.testing import RedisServer
from resilience.testing import FakeClock, arrivals, costs
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

pytestmark = pytest.mark.redis

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

limits = st.integers(1, 20)
periods = st.sampled_from([0.1, 0.25, 1.0, 3.0, 0.7])
bursts = st.integers(1, 10)

ALGORITHMS: dict[str, st.SearchStrategy[Algorithm]] = {
    "token-bucket": st.builds(TokenBucket, limits, periods, bursts),
    "gcra": st.builds(GCRA, limits, periods, bursts),
    "leaky-police": st.builds(LeakyBucket, limits, periods, bursts, st.just("police")),
    "leaky-shape": st.builds(LeakyBucket, limits, periods, bursts, st.just("shape")),
    "fixed-window": st.builds(FixedWindow, limits, periods),
    "sliding-log": st.builds(SlidingWindowLog, limits, periods),
    "sliding-counter": st.builds(SlidingWindowCounter, limits, periods, st.integers(1, 6)),
}

# Mostly whole costs (as users send them), sometimes fractional ones.
request_costs = st.one_of(costs(5), st.sampled_from([0.5, 0.1, 2.5, 30]))


def schedules() -> st.SearchStrategy[list[tuple[float, float]]]:
    return arrivals(120).flatmap(
        lambda times: st.lists(request_costs, min_size=len(times), max_size=len(times)).map(
            lambda cs: list(zip(times, cs, strict=True))
        )
    )


# Offsets put the schedule where real clocks live: near zero (monotonic after boot)
# and near the Unix epoch seconds that Redis TIME returns, where floats are coarser.
offsets = st.one_of(st.just(0.0), st.floats(0.0, 1e5), st.floats(1.6e9, 2.1e9))


@pytest.fixture(scope="module")
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_server.url, socket_timeout=5) as c:
        yield c


@pytest.mark.parametrize("kind", list(ALGORITHMS))
def test_redis_and_memory_decide_identically(kind: str, client: redis.Redis) -> None:
    @SETTINGS
    @given(ALGORITHMS[kind], schedules(), offsets)
    def check(algorithm: Algorithm, schedule: list[tuple[float, float]], offset: float) -> None:
        client.flushall()
        # A long ttl_margin: the fake clock runs faster than real time, and a key must
        # not expire (in real time) while the fake schedule still needs it.
        with pytest.warns(RuntimeWarning, match="cannot bound sync decisions"):
            store = RedisStore(client, clock="client", ttl_margin=3600)
        memory_clock, redis_clock = FakeClock(offset), FakeClock(offset)
        memory = RateLimiter(algorithm, clock=memory_clock, events=EventBus())
        remote = RateLimiter(algorithm, store=store, clock=redis_clock, events=EventBus())
        for i, (t, cost) in enumerate(schedule):
            memory_clock.set(offset + t)
            redis_clock.set(offset + t)
            expected = memory.try_acquire("k", cost)
            got = remote.try_acquire("k", cost)
            assert got == expected, f"request {i} at t={offset + t!r} cost={cost!r}"
            # Floats bit for bit (== already says so; -0.0 vs 0.0 aside) and same types.
            assert [type(v) for v in got] == [type(v) for v in expected]
        assert remote.store_errors == 0

    check()


# Hosts whose clocks disagree, with clock="client": each request is stamped by one of
# them, so the times the store sees step backwards now and then; some by an hour or a
# day (a host whose clock NTP has not corrected yet).
skews = st.one_of(
    st.just(0.0),
    st.sampled_from([-0.3, -0.05, 0.1]),
    st.floats(-1.0, 1.0),
    st.sampled_from([-3600.0, -86_400.0]),
    st.floats(-1e5, 0.0),
)
# NTP stepping the clock back (Redis TIME, or every client): every later request too.
steps = st.one_of(st.floats(0.0, 2.0), st.sampled_from([3600.0, 86_400.0]), st.floats(0.0, 1e6))


def skewed_schedules() -> st.SearchStrategy[list[tuple[float, float]]]:
    return schedules().flatmap(
        lambda plan: st.lists(skews, min_size=len(plan), max_size=len(plan)).map(
            lambda offsets: [(max(0.0, t + d), c) for (t, c), d in zip(plan, offsets, strict=True)]
        )
    )


@st.composite
def stepped_schedules(draw: st.DrawFn) -> list[tuple[float, float]]:
    """A schedule whose clock is stepped back (cumulatively) before some requests."""
    back = 0.0
    plan = []
    for t, cost in draw(schedules()):
        if draw(st.integers(0, 7)) == 0:
            back += draw(steps)
        plan.append((max(0.0, t - back), cost))
    return plan


def retry_bound(algorithm: Algorithm, cost: float) -> float:
    """The longest refusal a forward clock can see (tests/property/test_clock_steps.py)."""
    if isinstance(algorithm, TokenBucket | GCRA | LeakyBucket):
        return cost * algorithm.interval
    if isinstance(algorithm, SlidingWindowCounter):
        return algorithm.period + algorithm.period / algorithm.buckets
    return algorithm.period


class HostClock:
    """The clock of whichever host stamped the request: free to step backwards."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        raise AssertionError("try_acquire never sleeps")

    async def asleep(self, seconds: float) -> None:
        raise AssertionError("try_acquire never sleeps")


@pytest.mark.parametrize("kind", list(ALGORITHMS))
def test_redis_and_memory_agree_when_clocks_step_backwards(
    kind: str, client: redis.Redis
) -> None:
    @SETTINGS
    @given(ALGORITHMS[kind], st.one_of(skewed_schedules(), stepped_schedules()), offsets)
    def check(algorithm: Algorithm, schedule: list[tuple[float, float]], offset: float) -> None:
        client.flushall()
        with pytest.warns(RuntimeWarning, match="cannot bound sync decisions"):
            store = RedisStore(client, clock="client", ttl_margin=3600)
        clock = HostClock()
        memory = RateLimiter(algorithm, clock=clock, events=EventBus())
        remote = RateLimiter(algorithm, store=store, clock=clock, events=EventBus())
        for i, (t, cost) in enumerate(schedule):
            clock.now = offset + t
            expected = memory.try_acquire("k", cost)
            got = remote.try_acquire("k", cost)
            assert got == expected, f"request {i} at t={offset + t!r} cost={cost!r}"
            if not got.allowed and cost <= algorithm.capacity:  # nobody waits out a step
                most = retry_bound(algorithm, cost)
                assert got.retry_after <= most + 64 * math.ulp(clock.now + most), (i, got)
        assert remote.store_errors == 0

    check()


# -- the shared Lua helpers against their Python originals, many pairs per round trip --

HARNESS = b"""
local out = {}
for i = 1, #ARGV, 2 do
  local now, other = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  out[#out + 1] = num(wait_until(now, other))
  out[#out + 1] = num(window_index(now, other))
  out[#out + 1] = num(trunc(other - now))
end
return out
"""


def lua_helpers(client: redis.Redis, pairs: list[tuple[float, float]]) -> list[tuple[float, ...]]:
    from resilience.redis._scripts import _read

    args = [repr(v) for pair in pairs for v in pair]
    reply = client.eval((_read("prelude") + HARNESS).decode(), 0, *args)
    values = [float(v) for v in reply]
    return [tuple(values[i : i + 3]) for i in range(0, len(values), 3)]


def python_helpers(pairs: list[tuple[float, float]]) -> list[tuple[float, ...]]:
    from resilience.ratelimit.algorithms.base import wait_until, window_index

    return [(wait_until(a, b), window_index(a, b), int(b - a)) for a, b in pairs]


def test_lua_helpers_match_python_on_many_random_pairs(client: redis.Redis) -> None:
    import random

    rng = random.Random(20240601)
    pairs = []
    for _ in range(6000):
        scale = rng.choice([1e-3, 1.0, 100.0, 1e9])
        now = rng.random() * scale
        other = rng.random() * scale * rng.choice([1, 2, 1000, 1e6]) + 1e-12
        pairs.append((now, other))
    # wait_until must step past rounding in some of these (the nextafter loop).
    looped = sum(1 for a, b in pairs if b - a > 0 and a + (b - a) < b)
    assert looped > 0
    assert lua_helpers(client, pairs) == python_helpers(pairs)


positive = st.floats(1e-9, 1e10, allow_nan=False, allow_infinity=False)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.tuples(st.floats(-1e10, 1e10, allow_nan=False), positive), min_size=1, max_size=50)
)
def test_lua_helpers_match_python(client: redis.Redis, pairs: list[tuple[float, float]]) -> None:
    # Window indexes beyond 2**52 are not exact in Python either (int -> float); out of domain.
    pairs = [(a, b) for a, b in pairs if abs(a / b) < 2.0**52]
    assert lua_helpers(client, pairs) == python_helpers(pairs)


# -- the hour-long step, every algorithm, memory and Redis side by side -------------

HOUR_STEP = [
    TokenBucket(10, 60.0),
    GCRA(10, 60.0),
    LeakyBucket(10, 60.0),
    LeakyBucket(10, 60.0, mode="shape"),
    FixedWindow(10, 60.0),
    SlidingWindowLog(10, 60.0),
    SlidingWindowCounter(10, 60.0, buckets=4),
]


@pytest.mark.parametrize("algorithm", HOUR_STEP, ids=lambda a: f"{a.kind}-{getattr(a, 'mode', '')}")
@pytest.mark.parametrize("used", [1, 10], ids=["used-once", "exhausted"])
def test_an_hour_backward_step_waits_no_longer_than_a_forward_clock(
    algorithm: Algorithm, used: int, client: redis.Redis
) -> None:
    """Before: ~3,552 s (buckets used once), 3,620-3,660 s (windows and logs exhausted)."""
    client.flushall()
    with pytest.warns(RuntimeWarning, match="cannot bound sync decisions"):
        store = RedisStore(client, clock="client", ttl_margin=3600)
    clock = HostClock()
    memory = RateLimiter(algorithm, clock=clock, events=EventBus())
    remote = RateLimiter(algorithm, store=store, clock=clock, events=EventBus())
    clock.now = 1_700_000_000.0
    for _ in range(used):
        assert memory.try_acquire("k") == remote.try_acquire("k")
    clock.now -= 3600.0
    for cost in (1, 10):
        expected = memory.try_acquire("k", cost)
        got = remote.try_acquire("k", cost)
        assert got == expected
        assert got.allowed or got.retry_after <= retry_bound(algorithm, cost) + 1e-6
    assert remote.store_errors == 0
