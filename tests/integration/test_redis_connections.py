"""The store's own connections: reused, bounded, recovered, fork- and loop-safe, closed.

A decision runs on one of the store's own connections (``connections=``,
default 4 per client) instead of borrowing from redis-py's pool on every
call.  These tests check what that must never cost: a wrong decision, a
reply read by the wrong call, more connections than allowed, a socket shared
with a forked child, or a socket left open by ``close()``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from resilience import FixedWindow, RateLimiter
from resilience.events import EventBus
from resilience.redis import RedisStore
from resilience.redis.testing import RedisServer

pytestmark = pytest.mark.redis

LONG = 2.0**40  # one aligned window from 1970 to the year 36,000: none ends mid-test (server clock)


def limiter(store: RedisStore, limit: int = 1_000_000, name: str = "conn") -> RateLimiter:
    return RateLimiter(FixedWindow(limit, LONG), store=store, name=name, events=EventBus())


def clients(url: str) -> int:
    """Connections the server sees, besides the one asking."""
    with redis.Redis.from_url(url) as admin:
        return len(admin.client_list()) - 1


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    built = RedisStore.from_url(redis_url, timeout=1.0, connections=2)
    yield built
    built.close()
    assert built.run_async is not None
    asyncio.run(built.run_async.aclose())  # own connections of a closed loop are dropped


def test_sequential_decisions_reuse_one_connection(store: RedisStore, redis_url: str) -> None:
    before = clients(redis_url)
    rl = limiter(store)
    for _ in range(50):
        assert rl.try_acquire("k")
    assert store.run_sync is not None and store.run_sync.idle_connections == 1
    assert clients(redis_url) == before + 1


def test_busy_connections_overflow_to_the_pool_and_admit_exactly(
    store: RedisStore, redis_url: str
) -> None:
    rl = limiter(store, limit=300, name="threads")
    barrier = threading.Barrier(12)
    admitted: list[int] = []

    def worker() -> None:
        barrier.wait()
        admitted.append(sum(bool(rl.try_acquire("shared")) for _ in range(40)))

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(admitted) == 300  # 480 attempts, exactly the limit admitted
    assert rl.store_errors == 0
    runner = store.run_sync
    assert runner is not None and runner.idle_connections <= 2  # never more than its own 2
    assert runner._opened <= 2


def test_tasks_overflow_to_the_pool_and_admit_exactly(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, timeout=1.0, connections=2)
    rl = limiter(store, limit=50, name="tasks")

    async def main() -> int:
        # 80 at once: within redis-py's default pool of 100 for the overflow
        results = await asyncio.gather(*(rl.atry_acquire("shared") for _ in range(80)))
        await store.aclose()
        return sum(bool(result) for result in results)

    assert asyncio.run(main()) == 50
    assert rl.store_errors == 0
    runner = store.run_async
    assert runner is not None and runner._opened <= 2


def test_zero_connections_borrows_every_call(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, connections=0)
    rl = limiter(store, limit=3, name="zero")
    assert [bool(rl.try_acquire("k")) for _ in range(4)] == [True, True, True, False]
    assert store.run_sync is not None and store.run_sync.idle_connections == 0
    store.close()


@pytest.mark.parametrize("bad", [-1, 1.5, True, "4"])
def test_connections_is_validated(redis_url: str, bad: object) -> None:
    with pytest.raises(ValueError, match="connections"):
        RedisStore.from_url(redis_url, connections=bad)  # type: ignore[arg-type]


def _kill_others(url: str) -> None:
    with redis.Redis.from_url(url) as admin:
        admin.client_kill_filter(_type="normal", skipme=True)


def test_a_connection_closed_while_idle_fails_once_and_is_never_resent(
    store: RedisStore, redis_url: str
) -> None:
    rl = limiter(store, limit=5, name="killed")
    assert rl.try_acquire("k").remaining == 4
    _kill_others(redis_url)  # the server drops the idle connection
    assert rl.try_acquire("k").allowed and rl.store_errors == 1  # fail_open, not resent
    assert rl.try_acquire("k").remaining == 3  # reconnected; the failed call counted nothing
    assert rl.try_acquire("k").remaining == 2

    async def main() -> list[int]:
        first = (await rl.atry_acquire("a")).remaining
        _kill_others(redis_url)
        await rl.atry_acquire("a")
        return [first, (await rl.atry_acquire("a")).remaining]

    assert asyncio.run(main()) == [4, 3]


def test_a_timed_out_reply_is_never_read_by_the_next_call(fresh_redis_server: RedisServer) -> None:
    url = fresh_redis_server.url
    store = RedisStore.from_url(url, timeout=0.1, connections=1)
    rl = limiter(store, limit=10, name="late")
    assert rl.try_acquire("warm").remaining == 9
    with redis.Redis.from_url(url) as admin:
        admin.execute_command("CLIENT", "PAUSE", 400, "ALL")
        late = rl.try_acquire("a", cost=1)  # times out: its reply arrives after the pause
        assert late.allowed and rl.store_errors == 1  # fail_open answered
        time.sleep(0.5)
    # Had the timed-out connection been kept, this call would read the late reply for "a".
    assert rl.try_acquire("b", cost=3).remaining == 7

    async def main() -> int:
        await rl.atry_acquire("c")
        with redis.Redis.from_url(url) as admin:
            admin.execute_command("CLIENT", "PAUSE", 400, "ALL")
            await rl.atry_acquire("d", cost=1)
            await asyncio.sleep(0.5)
        return (await rl.atry_acquire("e", cost=4)).remaining

    assert asyncio.run(main()) == 6
    asyncio.run(store.aclose())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_connection(store: RedisStore) -> None:
    rl = limiter(store, limit=100, name="fork")
    assert rl.try_acquire("k").remaining == 99  # the parent holds an open connection now
    pid = os.fork()
    if pid == 0:  # the child: must not write on the parent's socket
        code = 1
        try:
            runner = store.run_sync
            assert runner is not None and runner.idle_connections == 0
            code = 0 if [rl.try_acquire("k").remaining for _ in range(3)] == [98, 97, 96] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert rl.try_acquire("k").remaining == 95  # the parent's connection still works


def test_the_store_follows_a_new_event_loop(store: RedisStore) -> None:
    rl = limiter(store, limit=10, name="loops")

    async def once() -> int:
        return (await rl.atry_acquire("k")).remaining

    assert asyncio.run(once()) == 9
    assert asyncio.run(once()) == 8  # the first loop's connection is closed; a new one opens
    assert rl.store_errors == 0


def test_close_releases_every_own_connection(fresh_redis_server: RedisServer) -> None:
    redis_url = fresh_redis_server.url
    before = clients(redis_url)
    store = RedisStore.from_url(redis_url, connections=2)
    rl = limiter(store, name="close")

    async def main() -> None:
        await asyncio.gather(*(rl.atry_acquire("k") for _ in range(10)))
        assert rl.try_acquire("k")
        await store.aclose()

    asyncio.run(main())
    assert store.run_sync is not None and store.run_sync.idle_connections == 0
    assert store.run_async is not None and store.run_async.idle_connections == 0
    deadline = time.monotonic() + 5
    while clients(redis_url) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert clients(redis_url) == before


def test_a_cancelled_call_never_leaves_its_reply_to_the_next(
    fresh_redis_server: RedisServer,
) -> None:
    import redis.asyncio

    url = fresh_redis_server.url

    async def main() -> list[int]:
        # No socket timeouts on the client: the store's own connection gets timeout=0.1.
        client = redis.asyncio.Redis.from_url(url)
        store = RedisStore(client, timeout=0.1, connections=1)
        assert store.run_async is not None and store.run_async.capped
        rl = limiter(store, limit=10, name="cancel")
        remaining = [(await rl.atry_acquire("warm")).remaining]
        with redis.Redis.from_url(url) as admin:
            admin.execute_command("CLIENT", "PAUSE", 400, "ALL")
            await rl.atry_acquire("a")  # times out after 0.1 s
            task = asyncio.ensure_future(rl.atry_acquire("b"))
            await asyncio.sleep(0.02)
            task.cancel()  # the caller gives up
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.5)
        remaining.append((await rl.atry_acquire("c", cost=3)).remaining)
        remaining.append((await rl.atry_acquire("c", cost=2)).remaining)
        await store.aclose()
        await client.aclose()
        return remaining

    assert asyncio.run(main()) == [9, 7, 5]


def test_own_connections_are_bounded_whatever_the_client(recwarn: pytest.WarningsRecorder) -> None:
    """A client with redis-py's defaults (no timeouts, 10 retries with backoff) and no server."""
    import redis.asyncio

    from resilience.redis.testing import free_port

    port = free_port()  # nothing listens here
    with pytest.warns(RuntimeWarning, match="beyond its own 4 connections"):
        store = RedisStore(
            redis.Redis(port=port), async_client=redis.asyncio.Redis(port=port), timeout=0.25
        )
    rl = limiter(store, limit=3, name="dead")
    for _ in range(3):
        started = time.monotonic()
        assert rl.try_acquire("k").allowed  # fail_open
        assert time.monotonic() - started < 1.0  # not seconds of connect retries

    async def main() -> None:
        for _ in range(3):
            started = time.monotonic()
            assert (await rl.atry_acquire("k")).allowed
            assert time.monotonic() - started < 1.0

    asyncio.run(main())
    assert rl.store_errors == 6
    with pytest.warns(RuntimeWarning, match="cannot bound its sync decisions"):
        RedisStore(redis.Redis(port=port), connections=0)
