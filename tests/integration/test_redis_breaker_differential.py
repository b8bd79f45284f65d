"""Differential property test: the Redis breaker table answers exactly as the memory one.

DESIGN.md principle 3 for breakers: for any sequence of permits, outcomes
(late and repeated ones included), releases, operator actions and time steps,
at any clock offset, every ``Permit`` (but its token), every ``Transition``
and every ``BreakerSnapshot`` must be equal, floats bit for bit.  The Redis
store runs with ``clock="client"`` so both tables read the same ``FakeClock``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilience.breaker import (
    BreakerConfig,
    BreakerTable,
    CircuitState,
    CountWindow,
    MemoryBreakerTable,
    Permit,
    TimeWindow,
    Window,
)
from resilience.redis import RedisStore
from resilience.redis.breaker import RedisBreakerStore
from resilience.redis.testing import RedisServer
from resilience.testing import FakeClock

pytestmark = pytest.mark.redis

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

windows: st.SearchStrategy[Window] = st.one_of(
    st.builds(CountWindow, st.integers(1, 8)),
    st.builds(TimeWindow, st.sampled_from([1.0, 2.5, 10.0, 0.3]), st.integers(1, 5)),
)


@st.composite
def configs(draw: st.DrawFn) -> BreakerConfig:
    window = draw(windows)
    top = window.size if isinstance(window, CountWindow) else 6
    slow = draw(st.sampled_from([None, 0.5]))
    consecutive = draw(st.one_of(st.none(), st.integers(1, 4)))
    rate = draw(st.sampled_from([None, 0.25, 0.34, 0.5, 1.0]))
    if rate is None and consecutive is None and slow is None:
        rate = 0.5
    return BreakerConfig.build(
        failure_rate_threshold=rate,
        minimum_calls=draw(st.integers(1, top)),
        window=window,
        consecutive_failures=consecutive,
        slow_call_duration=slow,
        slow_call_rate_threshold=draw(st.sampled_from([0.5, 1.0, 0.3])),
        open_duration=draw(st.sampled_from([1.0, 2.5, 0.3])),
        half_open_max_calls=draw(st.integers(1, 3)),
    )


durations = st.sampled_from([0.0, 0.2, 0.5, 1.0])
steps = st.sampled_from([0.0, 0.05, 0.1, 0.3, 1.0, 2.5, 7.0])
# Backward steps: a clock NTP steps back (Redis TIME, or the clients' with clock="client").
back_steps = st.one_of(st.sampled_from([0.1, 1.0, 3600.0, 86_400.0]), st.floats(0.0, 1e6))
which = st.one_of(st.just(-1), st.integers(0, 50))  # mostly the latest permit
operations = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.booleans(), durations),
        st.tuples(st.just("call"), st.booleans(), durations),
        st.tuples(st.just("acquire")),
        st.tuples(st.just("record"), which, st.booleans(), durations),
        st.tuples(st.just("release"), which),
        st.tuples(st.just("advance"), steps),
        st.tuples(st.just("advance"), steps),
        st.tuples(st.just("snapshot")),
        st.tuples(st.just("back"), back_steps),
        st.tuples(st.sampled_from(["force_open", "force_closed", "reset"])),
    ),
    min_size=20,
    max_size=120,
)
# Near zero (monotonic clocks) and near the Unix time Redis TIME returns.
offsets = st.one_of(st.just(0.0), st.floats(0.0, 1e5), st.floats(1.6e9, 2.1e9))


@pytest.fixture(scope="module")
def store(redis_server: RedisServer) -> Iterator[RedisStore]:
    s = RedisStore.from_url(redis_server.url, clock="client", timeout=5.0)
    yield s
    s.close()


def public(permit: Permit) -> tuple[Any, ...]:
    return (permit.allowed, permit.state, permit.retry_after, permit.transition)


def bounded(permit: Permit, memory: BreakerTable, now: float) -> bool:
    """Nobody waits out a backward step: a refusal lasts at most open_duration."""
    duration = memory.config.open_duration  # type: ignore[attr-defined]
    return permit.allowed or permit.retry_after <= duration + 64 * math.ulp(now + duration)


def run_both(
    ops: list[tuple[Any, ...]], memory: BreakerTable, remote: BreakerTable, clock: FakeClock
) -> None:
    permits: list[tuple[Permit, Permit]] = []
    for step, op in enumerate(ops):
        now = clock.monotonic()
        where = f"step {step}: {op}"
        kind = op[0]
        if kind == "call":  # acquire, and report at once if admitted
            m, r = memory.acquire(now), remote.acquire(now)
            assert public(r) == public(m), where
            assert bounded(m, memory, now), where
            if m.allowed:
                expected = memory.record(m, op[1], op[2], now)
                assert remote.record(r, op[1], op[2], now) == expected, where
        elif kind == "acquire":
            pair = memory.acquire(now), remote.acquire(now)
            assert public(pair[1]) == public(pair[0]), where
            assert bounded(pair[0], memory, now), where
            if pair[0].allowed:
                permits.append(pair)
        elif kind == "record" and permits:
            m, r = permits[op[1] % len(permits)]
            expected = memory.record(m, op[2], op[3], now)
            assert remote.record(r, op[2], op[3], now) == expected, where
        elif kind == "release" and permits:
            m, r = permits[op[1] % len(permits)]
            memory.release(m, now)
            remote.release(r, now)
        elif kind == "advance":
            clock.advance(op[1])
        elif kind == "back":
            clock.step_back(op[1])
        elif kind == "snapshot":
            assert remote.snapshot(now) == memory.snapshot(now), where
            assert remote.state(now) is memory.state(now), where
        elif kind == "force_open":
            assert remote.force(CircuitState.OPEN, now) == memory.force(CircuitState.OPEN, now)
        elif kind == "force_closed":
            expected = memory.force(CircuitState.CLOSED, now)
            assert remote.force(CircuitState.CLOSED, now) == expected, where
        elif kind == "reset":
            assert remote.reset(now) == memory.reset(now), where
    now = clock.monotonic()
    assert remote.snapshot(now) == memory.snapshot(now), "final snapshot"


_names = itertools.count()


@SETTINGS
@given(config=configs(), ops=operations, offset=offsets)
def test_redis_table_matches_memory_table(
    store: RedisStore, config: BreakerConfig, ops: list[tuple[Any, ...]], offset: float
) -> None:
    clock = FakeClock(offset)
    memory = MemoryBreakerTable(config, clock.monotonic)
    name = f"diff-{next(_names)}"  # a fresh circuit per example
    remote = RedisBreakerStore(store).breaker_table(name, config, clock.monotonic)
    run_both(ops, memory, remote, clock)


SCENARIOS: dict[str, tuple[BreakerConfig, list[tuple[Any, ...]]]] = {
    # A window restarted inside a bucket must not count (nor later drop) the old calls.
    "time-window-restart-in-bucket": (
        BreakerConfig.build(minimum_calls=4, window=TimeWindow(2.0, 2)),
        [("call", True, 0.0), ("call", True, 0.0), ("reset",), ("call", True, 0.0)]
        + [("advance", 0.5), ("call", False, 0.0), ("snapshot",)] * 6,
    ),
    # A released probe gives its slot to the next caller; a stale release does nothing.
    "released-probe-frees-its-slot": (
        BreakerConfig.build(consecutive_failures=1, open_duration=1.0, half_open_max_calls=2),
        [
            ("call", True, 0.0),
            ("advance", 1.0),
            *[("acquire",)] * 3,
            *[("release", -1)] * 3,
            ("acquire",),
            ("snapshot",),
            ("record", 0, False, 0.0),
            ("record", -1, False, 0.0),
            ("snapshot",),
        ],
    ),
    # Late outcomes of closed calls land after the circuit opened and closed again.
    "late-outcomes-are-ignored": (
        BreakerConfig.build(minimum_calls=2, window=CountWindow(2), open_duration=1.0),
        [
            *[("acquire",)] * 3,
            ("record", 0, True, 0.0),
            ("record", 1, True, 0.0),
            ("advance", 1.0),
            ("call", False, 0.0),
            ("record", 2, True, 0.0),
            ("snapshot",),
            ("call", True, 0.0),
            ("snapshot",),
        ],
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_scenarios_match(store: RedisStore, scenario: str) -> None:
    config, ops = SCENARIOS[scenario]
    clock = FakeClock(1000.0)
    memory = MemoryBreakerTable(config, clock.monotonic)
    remote = RedisBreakerStore(store).breaker_table(scenario, config, clock.monotonic)
    run_both(ops, memory, remote, clock)


def test_a_long_run_through_a_time_window_rolls_like_memory(store: RedisStore) -> None:
    """Many buckets, steps shorter and longer than a bucket, failures at a steady share."""
    config = BreakerConfig.build(
        failure_rate_threshold=0.6, minimum_calls=5, window=TimeWindow(3.0, 6)
    )
    clock = FakeClock(1_700_000_000.0)
    memory = MemoryBreakerTable(config, clock.monotonic)
    remote = RedisBreakerStore(store).breaker_table("long-time", config, clock.monotonic)
    ops: list[tuple[Any, ...]] = []
    for i in range(300):
        ops += [("acquire",), ("record", -1, i % 5 < 2, 0.0), ("snapshot",)]
        ops.append(("advance", (0.05, 0.4, 0.7, 1.3, 0.0)[i % 5]))
    run_both(ops, memory, remote, clock)
