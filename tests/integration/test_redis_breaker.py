"""``CircuitBreaker(store=RedisStore(...))``: shared state, keys, expiry, async, probes.

Against a real ``redis-server`` (the session's, flushed per test).  The
differential test proves the transitions equal the memory table's; these
tests cover what only a shared store has: state seen by other instances,
the key layout, expiry, and half-open probes raced for over the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from resilience.breaker import (
    BreakerConfig,
    BreakerStore,
    BreakerTable,
    CircuitBreaker,
    CircuitState,
    CountWindow,
    TimeWindow,
)
from resilience.errors import CircuitOpen
from resilience.events import CircuitStateChanged, EventBus, StoreFailed
from resilience.redis import RedisStore
from resilience.redis.breaker import MIN_IDLE_TTL, RedisBreakerStore, RedisBreakerTable
from resilience.testing import FakeClock

pytestmark = pytest.mark.redis

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    s = RedisStore.from_url(redis_url, clock="client", timeout=5.0)
    yield s
    s.close()


@pytest.fixture
async def astore(redis_url: str) -> AsyncIterator[RedisStore]:
    s = RedisStore.from_url(redis_url, clock="client", timeout=5.0)
    yield s
    await s.aclose()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as c:
        yield c


def fail() -> None:
    raise OSError("down")


def make(
    store: Any, clock: FakeClock, events: list[Any] | None = None, **kw: Any
) -> CircuitBreaker:
    kw.setdefault("minimum_calls", 2)
    kw.setdefault("window", CountWindow(4))
    kw.setdefault("open_duration", 10.0)
    bus = EventBus([events.append] if events is not None else [])
    return CircuitBreaker(kw.pop("name", "svc"), store=store, clock=clock, events=bus, **kw)


def trip(breaker: CircuitBreaker, times: int = 2) -> None:
    for _ in range(times):
        with pytest.raises(OSError):
            breaker.call(fail)


def test_the_store_and_its_tables_satisfy_the_protocols(store: RedisStore) -> None:
    assert isinstance(store, BreakerStore)
    assert isinstance(RedisBreakerStore(store), BreakerStore)
    table = store.breaker_table("x", BreakerConfig.build(), FakeClock().monotonic)
    assert isinstance(table, BreakerTable) and isinstance(table, RedisBreakerTable)
    assert table.local is False and table.closed is None


def test_a_missing_key_is_closed_and_nothing_is_written_until_it_matters(
    store: RedisStore, client: redis.Redis
) -> None:
    b = make(store, FakeClock())
    assert b.state is CLOSED and b.snapshot().calls == 0
    permit = b.permit()
    assert permit.allowed and permit.state is CLOSED
    assert client.dbsize() == 0  # building a breaker and asking to call write nothing
    b.on_success(permit)
    assert client.dbsize() == 1 and b.snapshot().calls == 1


def test_breakers_with_one_name_share_one_circuit(store: RedisStore) -> None:
    clock, seen = FakeClock(), list[Any]()
    first, second = make(store, clock, seen), make(store, clock)
    trip(first)
    assert second.state is OPEN
    with pytest.raises(CircuitOpen) as refused:
        second.call(int)
    assert refused.value.retry_after == 10.0
    assert [(e.old, e.new, e.reason) for e in seen] == [("closed", "open", "failure_rate")]


def test_a_new_instance_never_resets_shared_state(store: RedisStore) -> None:
    clock = FakeClock()
    make(store, clock).force_open()
    again = make(store, clock)
    assert again.state is OPEN and again.snapshot().held
    make(store, clock, minimum_calls=1)  # other options: still no reset
    assert again.state is OPEN


def test_window_counts_are_shared(store: RedisStore) -> None:
    clock = FakeClock()
    a, b = make(store, clock, minimum_calls=4), make(store, clock, minimum_calls=4)
    a.call(int)
    trip(b, 1)
    a.call(int)
    snap = b.snapshot()
    assert (snap.calls, snap.failures, snap.consecutive_failures) == (3, 1, 0)
    trip(a, 1)  # 2 of 4 failed: 50 %
    assert b.state is OPEN


def test_windows_of_another_shape_are_kept_apart_but_the_state_is_shared(
    store: RedisStore,
) -> None:
    clock = FakeClock()
    small = make(store, clock, window=CountWindow(2))
    wide = make(store, clock, window=CountWindow(50), minimum_calls=50)
    trip(wide, 1)
    assert small.snapshot().calls == 0 and wide.snapshot().calls == 1
    trip(small)
    assert wide.state is OPEN


def test_every_key_expires_and_one_breaker_is_one_key_in_one_slot(
    store: RedisStore,
    client: redis.Redis,
    redis_url: str,
    every_key_expires: Callable[[str], int],
) -> None:
    clock = FakeClock()
    trip(make(store, clock, name="count"))
    timed = make(store, clock, name="timed", window=TimeWindow(7200.0, 4), open_duration=5.0)
    timed.call(int)
    make(store, clock, name="held").force_closed()
    weird = make(store, clock, name="a{b}%c")
    weird.call(int)
    keys = {k.decode() for k in client.scan_iter(count=1000)}
    assert keys == {"rl:cb:{count}", "rl:cb:{timed}", "rl:cb:{held}", "rl:cb:{a%7Bb%7D%25c}"}
    assert key_slot(b"rl:cb:{a%7Bb%7D%25c}") == key_slot(b"a%7Bb%7D%25c")
    assert every_key_expires(redis_url) == 4
    margin = store.ttl_margin
    idle = (MIN_IDLE_TTL + margin) * 1000
    assert idle - 60_000 < client.pttl("rl:cb:{count}") <= idle
    assert 2 * 7200 * 1000 - 60_000 < client.pttl("rl:cb:{timed}") <= (2 * 7200 + margin) * 1000
    assert client.pttl("rl:cb:{held}") > idle  # a hold lasts held_ttl (a day)


def test_idle_ttl_is_configurable_and_must_outlast_the_open_timer(
    store: RedisStore, client: redis.Redis
) -> None:
    short = RedisBreakerStore(store, idle_ttl=120.0)
    trip(make(short, FakeClock()))
    assert 110_000 < client.pttl("rl:cb:{svc}") <= (120.0 + store.ttl_margin) * 1000
    with pytest.raises(ValueError, match="idle_ttl"):
        make(RedisBreakerStore(store, idle_ttl=5.0), FakeClock(), open_duration=10.0)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"on_store_error": "ignore"}, "on_store_error"),
        ({"store_error_retry_after": 0}, "store_error_retry_after"),
        ({"idle_ttl": -1.0}, "idle_ttl"),
        ({"held_ttl": float("inf")}, "held_ttl"),
        ({"probe_timeout": 0}, "probe_timeout"),
        ({"events": [print]}, "events"),
    ],
)
def test_options_are_validated(store: RedisStore, options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RedisBreakerStore(store, **options)


def test_only_a_redis_store_is_accepted() -> None:
    with pytest.raises(ValueError, match="store"):
        RedisBreakerStore(object())  # type: ignore[arg-type]


def test_half_open_probes_then_close(store: RedisStore) -> None:
    clock, seen = FakeClock(), list[Any]()
    b = make(store, clock, seen, half_open_max_calls=2)
    trip(b)
    clock.advance(10.0)
    assert b.state is HALF_OPEN
    first, second, third = b.permit(), b.permit(), b.permit()
    assert first.allowed and second.allowed and not third.allowed
    assert third.state is HALF_OPEN and third.retry_after == 10.0
    b.on_success(first)
    assert b.snapshot().probes_succeeded == 1
    b.on_success(second)
    assert b.state is CLOSED
    assert [e.reason for e in seen] == ["failure_rate", "open_duration_elapsed", "probes_succeeded"]


def test_a_failed_probe_wins_and_late_outcomes_are_ignored(store: RedisStore) -> None:
    clock = FakeClock()
    b = make(store, clock, half_open_max_calls=2)
    late = b.permit()  # a closed call still running when the circuit opens
    trip(b)
    clock.advance(10.0)
    ok, bad = b.permit(), b.permit()
    b.on_success(ok)
    b.on_failure(bad)
    assert b.state is OPEN and b.snapshot().retry_after == 10.0
    clock.advance(5.0)
    b.on_failure(late)  # from an earlier epoch: does not extend the open timer
    b.on_failure(ok)  # reported twice: ignored
    assert b.snapshot().retry_after == 5.0


def test_slow_calls_are_judged_from_the_breakers_own_timing(store: RedisStore) -> None:
    clock = FakeClock()
    b = make(store, clock, slow_call_duration=1.0, failure_rate_threshold=None)

    def slow() -> str:
        clock.advance(1.5)
        return "late"

    assert b.call(slow) == "late" and b.state is CLOSED
    assert b.call(slow) == "late"
    assert b.state is OPEN


def test_probe_timeout_reopens_when_probes_never_report(store: RedisStore) -> None:
    clock, seen = FakeClock(), list[Any]()
    b = make(RedisBreakerStore(store, probe_timeout=3.0), clock, seen)
    trip(b)
    clock.advance(10.0)
    lost = b.permit()  # its process dies: never reported
    assert lost.allowed
    clock.advance(2.0)
    assert not b.permit().allowed and b.state is HALF_OPEN
    clock.advance(1.0)
    reopened = b.permit()
    assert not reopened.allowed and reopened.state is OPEN and reopened.retry_after == 10.0
    assert seen[-1].reason == "probe_timeout"
    clock.advance(10.0)
    assert b.permit().allowed  # a fresh round of probes


def test_without_probe_timeout_half_open_waits_for_its_probes(store: RedisStore) -> None:
    clock = FakeClock()
    b = make(store, clock)
    trip(b)
    clock.advance(10.0)
    assert b.permit().allowed
    clock.advance(1000.0)
    assert not b.permit().allowed and b.state is HALF_OPEN


def test_operator_controls(store: RedisStore) -> None:
    clock, seen = FakeClock(), list[Any]()
    b = make(store, clock, seen)
    b.force_open()
    with pytest.raises(CircuitOpen):
        b.call(int)
    clock.advance(1000.0)
    assert b.state is OPEN  # held: no probes
    b.force_closed()
    trip(b, 4)
    snap = b.snapshot()
    assert snap.state is CLOSED and snap.held and snap.failures == 4
    b.reset()
    assert b.snapshot() == (CLOSED, False, 0, 0, 0, 0, 0, 0, 0.0)
    assert [(e.new, e.reason) for e in seen] == [
        ("open", "forced_open"),
        ("closed", "forced_closed"),
    ]
    with pytest.raises(ValueError, match="state"):
        b._table.force(HALF_OPEN, 0.0)


async def test_async_calls_use_the_asyncio_client(astore: RedisStore) -> None:
    assert astore.run_async is not None
    clock, seen = FakeClock(), list[Any]()
    b = make(astore, clock, seen, half_open_max_calls=1, ignore=KeyError)

    async def ok() -> str:
        return "ok"

    async def broken() -> None:
        raise OSError

    async def ignored() -> None:
        raise KeyError

    assert await b.acall(ok) == "ok"
    with pytest.raises(OSError):
        await b.acall(broken)  # 1 of 2 failed: 50 %
    assert await b.astate() is OPEN
    clock.advance(10.0)
    with pytest.raises(KeyError):
        await b.acall(ignored)  # the probe's slot is released...
    assert (await b.asnapshot()).probes_in_flight == 0
    assert await b.acall(ok) == "ok"  # ...so another caller probes
    assert await b.astate() is CLOSED
    await b.aforce_open()
    assert (await b.asnapshot()).held
    await b.areset()
    permit = await b.apermit()
    await b.aon_success(permit)
    await b.arelease(permit)  # a closed permit: nothing to give back
    assert (await b.asnapshot()).calls == 1
    await b.aon_failure(await b.apermit())
    assert await b.astate() is OPEN
    assert [e.reason for e in seen if isinstance(e, CircuitStateChanged)] == [
        "failure_rate",
        "open_duration_elapsed",
        "probes_succeeded",
        "forced_open",
        "reset",
        "failure_rate",
    ]


async def test_a_thousand_concurrent_calls_while_half_open_run_exactly_the_probes(
    redis_url: str,
) -> None:
    # A blocking pool queues callers for a connection: the default pool would refuse
    # the 101st concurrent call (MaxConnectionsError), and the breaker would fail open.
    import redis.asyncio

    pool = redis.asyncio.BlockingConnectionPool.from_url(redis_url, max_connections=20, timeout=5)
    client = redis.asyncio.Redis(connection_pool=pool)
    store = RedisStore(client, clock="client", timeout=10.0)
    try:
        await _thousand_calls(store)
    finally:
        await client.aclose()


async def _thousand_calls(astore: RedisStore) -> None:
    clock = FakeClock()
    b = make(astore, clock, half_open_max_calls=3, open_duration=5.0)
    for _ in range(2):
        with pytest.raises(OSError):
            await b.acall(_afail)
    clock.advance(5.0)
    reached = 0
    gate = asyncio.Event()

    async def probe() -> None:
        nonlocal reached
        reached += 1
        await gate.wait()

    async def one() -> float | None:
        try:
            await b.acall(probe)
        except CircuitOpen as exc:
            return exc.retry_after
        return None

    tasks = [asyncio.ensure_future(one()) for _ in range(1000)]
    for _ in range(200):  # bounded: until every task has its answer or is probing
        await asyncio.sleep(0.01)
        if sum(t.done() for t in tasks) == 1000 - 3:
            break
    gate.set()
    results = await asyncio.gather(*tasks)
    assert reached == 3
    refusals = [r for r in results if r is not None]
    assert len(refusals) == 997 and all(r > 0 for r in refusals)
    assert await b.astate() is CLOSED


async def _afail() -> None:
    raise OSError


def test_a_sync_only_store_refuses_async_calls_clearly(store: RedisStore) -> None:
    sync_only = RedisStore(store.sync_client, clock="client", timeout=5.0)
    b = make(sync_only, FakeClock())

    async def ok() -> None:
        return None

    with pytest.raises(TypeError, match="only a sync client"):
        asyncio.run(b.acall(ok))


def test_store_failed_is_not_emitted_while_redis_answers(store: RedisStore) -> None:
    events: list[Any] = []
    b = make(RedisBreakerStore(store, events=EventBus([events.append])), FakeClock())
    trip(b)
    assert not [e for e in events if isinstance(e, StoreFailed)]
    assert b._table.store_errors == 0  # type: ignore[attr-defined]


def test_scripts_reload_after_a_flush(store: RedisStore, client: redis.Redis) -> None:
    clock = FakeClock()
    b = make(store, clock)
    b.call(int)
    client.script_flush()
    trip(b, 1)  # NOSCRIPT, then EVAL: no store error
    assert b.state is OPEN
    assert b._table.store_errors == 0  # type: ignore[attr-defined]


# -- clocks that step backwards (NTP stepping TIME, or the clients' clock) ---------------


def test_open_circuit_stepped_back_an_hour_waits_at_most_open_duration(store: RedisStore) -> None:
    clock = FakeClock(1_700_000_000.0)
    b = make(store, clock, open_duration=30.0, name="stepped")
    trip(b)
    clock.step_back(3600.0)
    assert b.snapshot().retry_after == 30.0  # was 3,630
    refused = b.permit()
    assert not refused.allowed and refused.state is OPEN and refused.retry_after == 30.0
    clock.advance(29.0)
    assert b.permit().retry_after == pytest.approx(1.0)
    clock.advance(1.0)
    assert b.permit().allowed and b.state is HALF_OPEN


def test_probe_timeout_counts_from_a_clock_that_stepped_back(store: RedisStore) -> None:
    clock, seen = FakeClock(1_700_000_000.0), list[Any]()
    b = make(RedisBreakerStore(store, probe_timeout=3.0), clock, seen, name="stepped-probe")
    trip(b)
    clock.advance(10.0)
    assert b.permit().allowed  # a probe whose process dies
    clock.step_back(3600.0)
    assert not b.permit().allowed and b.state is HALF_OPEN
    clock.advance(3.0)  # was 3,603 s
    reopened = b.permit()
    assert not reopened.allowed and reopened.state is OPEN and reopened.retry_after == 10.0
    assert seen[-1].reason == "probe_timeout"
