"""RedisIdempotencyStore against a real redis-server: model, processes, crashes, outages."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from resilience import (
    IdempotencyKeyReused,
    StoreUnavailable,
    idempotent,
)
from resilience.events import EventBus, StoreFailed
from resilience.redis import RedisIdempotencyStore, RedisStore
from resilience.redis.testing import RedisServer
from resilience.testing import FakeClock
from tests.integration.test_idempotency_sqlite import (
    check_crash_recovery,
    check_processes_run_once,
)
from tests.property.idempotency_machine import IdempotencyStoreMachine

pytestmark = [
    pytest.mark.redis,
    pytest.mark.filterwarnings("ignore:RedisStore.timeout=.*cannot bound:RuntimeWarning"),
]


class RedisMachine(IdempotencyStoreMachine):
    url = ""

    def make_store(self) -> Any:
        client = redis.Redis.from_url(self.url)
        client.flushall()
        return RedisIdempotencyStore(client, clock="client", timeout=5.0)


def test_store_matches_the_model(redis_url: str, every_key_expires: Any) -> None:
    RedisMachine.url = redis_url
    run_state_machine_as_test(
        RedisMachine, settings=settings(max_examples=60, stateful_step_count=30, deadline=None)
    )
    every_key_expires(redis_url)


def evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


def test_first_call_is_two_round_trips_and_a_replay_one(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = RedisIdempotencyStore(client, timeout=5.0)

    @idempotent(store, key=lambda order: order, events=EventBus())
    def charge(order: str) -> dict[str, str]:
        return {"order": order}

    charge("warm-up")  # loads the scripts (NOSCRIPT, then EVAL)
    before = evalsha_calls(client)
    assert charge("o1") == {"order": "o1"}
    first = evalsha_calls(client)
    assert charge("o1") == {"order": "o1"}
    replay = evalsha_calls(client)
    assert (first - before, replay - first) == (2, 1)
    store.close()
    client.close()


def test_sync_and_async_clients_share_records(redis_url: str, every_key_expires: Any) -> None:
    sync = redis.Redis.from_url(redis_url)
    aio = redis.asyncio.Redis.from_url(redis_url)
    store = RedisIdempotencyStore(sync, async_client=aio, timeout=5.0)
    calls: list[str] = []

    @idempotent(store, key=lambda order, amount: order, name="charge", events=EventBus())
    def charge(order: str, amount: int) -> dict[str, Any]:
        calls.append(order)
        return {"order": order, "amount": amount}

    @idempotent(store, key=lambda order, amount: order, name="charge", events=EventBus())
    async def acharge(order: str, amount: int) -> dict[str, Any]:
        calls.append("async " + order)
        return {"order": order, "amount": amount}

    assert charge("o1", 5) == {"order": "o1", "amount": 5}

    async def main() -> None:
        assert await acharge("o1", 5) == {"order": "o1", "amount": 5}
        assert await acharge("o2", 6) == {"order": "o2", "amount": 6}
        with pytest.raises(IdempotencyKeyReused):
            await acharge("o1", 7)
        await store.aclose()
        await aio.aclose()

    asyncio.run(main())
    assert charge("o2", 6) == {"order": "o2", "amount": 6}
    assert calls == ["o1", "async o2"]
    keys = sorted(k.decode() for k in sync.scan_iter())
    assert keys == ["idem:{charge:o1}", "idem:{charge:o2}"]  # one hash (one slot) per record
    assert every_key_expires(redis_url) == 2
    store.close()
    sync.close()


def test_server_time_leases_with_a_fake_client_clock(redis_url: str) -> None:
    """The server's clock decides: a caller's clock jumping ahead frees nothing."""
    client = redis.Redis.from_url(redis_url)
    store = RedisIdempotencyStore(client, timeout=5.0)
    clock = FakeClock(0.0)
    assert store.begin("k", "f", "t1", 30.0, clock.monotonic()).status == "acquired"
    clock.advance(3600.0)
    claim = store.begin("k", "f", "t2", 30.0, clock.monotonic())
    assert claim.status == "in_progress" and 0.0 < claim.retry_after <= 30.0
    store.close()
    client.close()


def test_sixteen_threads_and_a_thousand_tasks_run_once(redis_url: str) -> None:
    sync = redis.Redis.from_url(redis_url)
    pool = redis.asyncio.BlockingConnectionPool.from_url(redis_url, max_connections=32, timeout=30)
    aio = redis.asyncio.Redis(connection_pool=pool)
    store = RedisIdempotencyStore(sync, async_client=aio, timeout=30.0)
    calls: list[str] = []
    barrier = threading.Barrier(16)
    results: list[Any] = []

    @idempotent(store, key=lambda k: k, wait=60.0, events=EventBus())
    def work(k: str) -> str:
        calls.append(k)
        return k.upper()

    @idempotent(store, key=lambda k: k, wait=60.0, events=EventBus())
    async def awork(k: str) -> str:
        calls.append(k)
        await asyncio.sleep(0.05)
        return k.upper()

    def run() -> None:
        barrier.wait(10)
        results.append(work("threads"))

    threads = [threading.Thread(target=run) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == ["THREADS"] * 16

    async def main() -> list[str]:
        gate = asyncio.Event()

        async def one() -> str:
            await gate.wait()
            return await awork("tasks")

        tasks = [asyncio.create_task(one()) for _ in range(1000)]
        await asyncio.sleep(0)
        gate.set()
        out = await asyncio.gather(*tasks)
        await store.aclose()
        await aio.aclose()
        return out

    assert asyncio.run(main()) == ["TASKS"] * 1000
    assert calls == ["threads", "tasks"]
    sync.close()


@pytest.mark.slow
def test_four_processes_run_the_function_once(redis_url: str, tmp_path: Path) -> None:
    check_processes_run_once(("redis", redis_url), tmp_path)


@pytest.mark.slow
def test_crashed_process_lease_expires_and_late_completion_is_refused(
    redis_url: str, tmp_path: Path
) -> None:
    check_crash_recovery(("redis", redis_url), tmp_path)


class Sink:
    min_level = "debug"

    def __init__(self) -> None:
        self.events: list[Any] = []

    def __call__(self, event: Any) -> None:
        self.events.append(event)


def test_outage_fails_closed_by_default_and_open_on_request(
    fresh_redis_server: RedisServer,
) -> None:
    sink = Sink()
    bus = EventBus([sink])
    closed = RedisIdempotencyStore.from_url(fresh_redis_server.url, timeout=0.5, events=bus)
    opened = RedisIdempotencyStore.from_url(
        fresh_redis_server.url, timeout=0.5, on_store_error="fail_open", events=bus
    )
    calls: list[str] = []

    def make(store: RedisIdempotencyStore) -> Any:
        @idempotent(store, key=lambda k: k, events=EventBus())
        def charge(k: str) -> str:
            calls.append(k)
            return k

        return charge

    assert make(closed)("before") == "before"
    fresh_redis_server.kill()
    try:
        with pytest.raises(StoreUnavailable):
            make(closed)("during")  # never run without the record: a duplicate is worse
        assert calls == ["before"]
        assert make(opened)("during") == "during"  # fail_open: runs unprotected
        assert calls == ["before", "during"]
        assert closed.store_errors == 1 and opened.store_errors == 1
        assert [e.action for e in sink.events if isinstance(e, StoreFailed)] == [
            "fail_closed",
            "fail_open",
        ]
    finally:
        fresh_redis_server.start()
    # back up (this test server keeps no data across restarts): protected again
    assert make(closed)("after") == "after" and make(closed)("after") == "after"
    assert calls == ["before", "during", "after"]
    closed.close()
    opened.close()


def test_options_are_validated(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with pytest.raises(ValueError, match="on_store_error"):
        RedisIdempotencyStore(client, on_store_error="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key_prefix"):
        RedisIdempotencyStore(client, key_prefix="{x}")
    with pytest.raises(ValueError, match="client"):
        RedisIdempotencyStore()
    with pytest.raises(ValueError, match="either"):
        RedisIdempotencyStore(client, store=RedisStore(client))
    client.close()


def test_a_connection_dropped_while_idle_loses_no_transition(
    fresh_redis_server: RedisServer,
) -> None:
    """After a restart, the store's idle connection is dead: its next call fails and is
    sent again on a fresh one (every transition is safe to repeat), never lost."""
    store = RedisIdempotencyStore.from_url(fresh_redis_server.url, timeout=2.0, events=EventBus())
    runs: list[str] = []

    @idempotent(store, key=lambda k: k, events=EventBus())
    def charge(k: str) -> str:
        runs.append(k)
        return k

    assert charge("before") == "before"  # leaves an idle connection behind
    fresh_redis_server.kill()
    fresh_redis_server.start()
    assert charge("after") == "after"
    assert charge("after") == "after"  # completed: replayed, not stuck in progress
    assert runs == ["before", "after"] and store.resent >= 1
    store.close()
