"""Limiter state under Redis memory pressure, on real servers with a small ``maxmemory``.

Why docs/redis.md asks for ``noeviction``: every key the store writes has an
expiry, so an evicting policy (``volatile-*`` as much as ``allkeys-*``) can
drop an over-limit client's state, and that client is admitted again.  The
first two tests show it happening.  With ``noeviction`` the state is never
dropped; instead, once memory is full, the decision script is refused with an
OOM error, which becomes ``StoreUnavailable`` and follows ``on_store_error``
(the last tests): no raw exception escapes, sync or async.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

redis = pytest.importorskip("redis")

from resilience.events import Event, EventBus, StoreFailed  # noqa: E402
from resilience.redis import RedisStore  # noqa: E402
from resilience.redis.testing import RedisServer, redis_server_binary  # noqa: E402
from tests.ratelimit_kit import (  # noqa: E402
    GCRA,
    FixedWindow,
    LeakyBucket,
    RateLimiter,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)

pytestmark = pytest.mark.redis

MAXMEMORY = "2mb"
FILLER = b"x" * 200
LIMITER_KEY = "rl:api:{client-a}:gcra"


def server(policy: str) -> Iterator[RedisServer]:
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("redis-server binary not found")
    instance = RedisServer(
        binary,
        extra_args=("--maxmemory", MAXMEMORY, "--maxmemory-policy", policy),
    ).start()
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def lru_server() -> Iterator[RedisServer]:
    yield from server("allkeys-lru")


@pytest.fixture
def volatile_server() -> Iterator[RedisServer]:
    yield from server("volatile-lru")


@pytest.fixture
def noeviction_server() -> Iterator[RedisServer]:
    yield from server("noeviction")


def spend(limiter: RateLimiter, key: str) -> None:
    """Exhaust ``key``'s burst, then check it is refused."""
    while limiter.try_acquire(key).allowed:
        pass
    assert not limiter.try_acquire(key).allowed


def fill(client: Any, start: int, count: int, ttl: bool = False) -> None:
    """Write ``count`` other keys (no expiry unless ``ttl``), as a cache sharing Redis would."""
    pipe = client.pipeline(transaction=False)
    for i in range(start, start + count):
        if ttl:
            pipe.set(f"cache:{i}", FILLER, ex=3600)
        else:
            pipe.set(f"cache:{i}", FILLER)
        if len(pipe) >= 500:
            pipe.execute()
    pipe.execute()


def fill_until_full(client: Any, ttl: bool = False) -> None:
    """Fill until Redis refuses writes; end on a one-key write that was refused.

    A refused pipeline's request buffer is freed afterwards, which can bring
    memory back under ``maxmemory``; a refused single ``SET`` leaves it over,
    so the next write (the limiter's) is refused too.
    """
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        fill(client, 0, 30_000, ttl=ttl)
    for i in range(100_000, 110_000):
        try:
            client.set(f"cache:{i}", FILLER, ex=3600 if ttl else None)
        except redis.exceptions.OutOfMemoryError:
            return
    raise AssertionError("Redis kept accepting writes past maxmemory")


def test_volatile_lru_evicts_limiter_state_first_and_forgives_the_client(
    volatile_server: RedisServer,
) -> None:
    """Other data without expiry: the limiter's keys are the only candidates, so they go first."""
    store = RedisStore.from_url(volatile_server.url, timeout=2.0)
    limiter = RateLimiter(GCRA(5, 3600.0), store=store, name="api")
    client = redis.Redis.from_url(volatile_server.url)
    try:
        spend(limiter, "client-a")
        assert client.exists(LIMITER_KEY)
        # Fill up to the limit (writes start failing once only non-expiring keys are left).
        fill_until_full(client)
        assert not client.exists(LIMITER_KEY)  # evicted, although the client is over its limit
        assert client.info("stats")["evicted_keys"] >= 1
    finally:
        client.close()
        store.close()
    # The evicted client starts over.  (The decision itself may be refused for memory now:
    # free some first, as the cache's own expiries or deletes would.)
    with redis.Redis.from_url(volatile_server.url) as cleanup:
        cleanup.delete(*[f"cache:{i}" for i in range(2_000)])
    store = RedisStore.from_url(volatile_server.url, timeout=2.0)
    try:
        again = RateLimiter(GCRA(5, 3600.0), store=store, name="api")
        assert again.try_acquire("client-a").allowed
    finally:
        store.close()


def test_allkeys_lru_can_evict_an_over_limit_client_and_admit_it_again(
    lru_server: RedisServer,
) -> None:
    store = RedisStore.from_url(lru_server.url, timeout=2.0)
    limiter = RateLimiter(GCRA(5, 3600.0), store=store, name="api")
    client = redis.Redis.from_url(lru_server.url)
    try:
        spend(limiter, "client-a")
        written = 0
        # Bounded: the key is idle while 2 MB of fresh cache entries turn over many times.
        while client.exists(LIMITER_KEY) and written < 300_000:
            fill(client, written, 10_000, ttl=True)
            written += 10_000
        assert not client.exists(LIMITER_KEY), "the idle limiter key survived 300,000 writes"
        assert limiter.try_acquire("client-a").allowed  # forgiven: its state was evicted
    finally:
        client.close()
        store.close()


class Seen:
    min_level = "debug"

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
def test_noeviction_keeps_state_and_an_oom_follows_on_store_error(
    noeviction_server: RedisServer, policy: str
) -> None:
    url = noeviction_server.url
    sync_store = RedisStore.from_url(url, timeout=2.0)
    seen = Seen()
    limiter = RateLimiter(
        GCRA(5, 3600.0),
        store=sync_store,
        name="api",
        on_store_error=policy,  # type: ignore[arg-type]
        store_error_retry_after=2.0,
        events=EventBus([seen]),
    )
    client = redis.Redis.from_url(url)
    try:
        spend(limiter, "client-a")  # over its limit
        assert limiter.try_acquire("client-b").allowed  # has state, under its limit
        fill_until_full(client, ttl=True)
        assert client.exists(LIMITER_KEY)  # nothing was evicted: the state is intact
        assert client.info("stats")["evicted_keys"] == 0
        errors_before = limiter.store_errors

        async def decide_async() -> list[bool]:
            keys = ("client-a", "client-b", "client-new")
            return [(await limiter.atry_acquire(k)).allowed for k in keys]

        decisions = [limiter.try_acquire(k) for k in ("client-a", "client-b", "client-new")]
        async_allowed = asyncio.run(decide_async())
        expected = policy == "fail_open"
        # A rejection writes nothing, so Redis still answers it: the over-limit client stays
        # refused under either policy.  An admission must write: refused with OOM, it becomes
        # StoreUnavailable and follows on_store_error.
        assert [d.allowed for d in decisions] == [False, expected, expected]
        assert async_allowed == [False, expected, expected]
        if not expected:
            assert [d.retry_after for d in decisions[1:]] == [2.0, 2.0]
        assert limiter.store_errors == errors_before + 4
        failures = [e for e in seen.events if isinstance(e, StoreFailed)]
        assert len(failures) == 4
        assert all("maxmemory" in e.error and e.action == policy for e in failures), failures
        # Memory freed (the cache's entries expire or are deleted): decisions resume,
        # and the over-limit client is still over its limit.
        client.delete(*[f"cache:{i}" for i in range(30_000)])
        assert not limiter.try_acquire("client-a").allowed
        assert limiter.try_acquire("client-c").allowed
    finally:
        client.close()
        sync_store.close()
        asyncio.run(sync_store.aclose())


ALGORITHMS = [
    GCRA(5, 60.0),
    TokenBucket(5, 60.0),
    LeakyBucket(5, 60.0),
    LeakyBucket(5, 60.0, mode="shape"),
    FixedWindow(5, 60.0),
    SlidingWindowLog(5, 60.0),
    SlidingWindowCounter(5, 60.0, buckets=4),
]


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
def test_every_algorithm_follows_on_store_error_when_redis_is_out_of_memory(
    noeviction_server: RedisServer, policy: str
) -> None:
    url = noeviction_server.url
    store = RedisStore.from_url(url, timeout=2.0)
    client = redis.Redis.from_url(url)
    try:
        fill_until_full(client, ttl=True)
        for algorithm in ALGORITHMS:
            limiter = RateLimiter(algorithm, store=store, on_store_error=policy)  # type: ignore[arg-type]
            sync = limiter.try_acquire("new-client")
            asynchronous = asyncio.run(limiter.atry_acquire("other-new-client"))
            assert sync.allowed is asynchronous.allowed is (policy == "fail_open"), algorithm
            assert limiter.store_errors == 2, algorithm
        assert list(client.scan_iter(match="rl:*")) == []  # no limiter key was written
    finally:
        client.close()
        store.close()
        asyncio.run(store.aclose())
