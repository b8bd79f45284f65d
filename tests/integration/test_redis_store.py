"""RedisStore against a real redis-server: decisions, expiry, key layout, scripts, clients."""

from __future__ import annotations

import asyncio
import math
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
import redis
import redis.asyncio
from redis.cluster import RedisCluster

from resilience import (
    GCRA,
    FixedWindow,
    InvalidKey,
    LeakyBucket,
    MemoryStore,
    RateLimited,
    RateLimiter,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from resilience.events import EventBus
from resilience.ratelimit.algorithms.base import Algorithm
from resilience.redis import RedisStore
from resilience.redis._scripts import script
from resilience.redis.testing import RedisServer
from resilience.testing import FakeClock

pytestmark = pytest.mark.redis

TIMEOUT = 2.0  # correctness tests: a loaded machine must not turn a slow reply into fail-open
# A period no test outlives, and whose aligned windows (and a counter's 4 sub-buckets
# of 2**38 s) have no boundary between 1970 and the year 10,000: with the server clock
# (Redis TIME, wall time) no window or sub-bucket can end while a test runs, whatever
# the time of day.  (86,400 s windows end at midnight UTC, mid-test now and then.)
LONG = 2.0**40
SLACK = 1e-3  # rounding of target - now where target is ~2**40 (ulp 2**-12)


def algorithms(limit: int, period: float) -> list[Algorithm]:
    return [
        TokenBucket(limit, period),
        GCRA(limit, period),
        LeakyBucket(limit, period),
        LeakyBucket(limit, period, mode="shape"),
        FixedWindow(limit, period),
        SlidingWindowLog(limit, period),
        SlidingWindowCounter(limit, period, buckets=4),
    ]


ALL = algorithms(5, LONG)
IDS = [f"{a.kind}-{getattr(a, 'mode', '')}" for a in ALL]


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    s = RedisStore.from_url(redis_url, timeout=TIMEOUT)
    yield s
    s.close()


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


def command(client: Any, *args: object) -> Any:
    """A raw command (redis-py leaves ``execute_command`` untyped)."""
    return client.execute_command(*args)


class Bounds(NamedTuple):
    retry_after: float
    reset_after: float


def bounds(algorithm: Algorithm) -> Bounds:
    """The largest retry_after (cost 1) and reset_after ``algorithm`` can report, at any ``now``.

    ``SLACK`` covers the last-place rounding of ``target - now`` at Unix-epoch times.
    """
    period = algorithm.period
    if isinstance(algorithm, TokenBucket | GCRA | LeakyBucket):
        return Bounds(algorithm.interval + SLACK, algorithm.capacity * algorithm.interval + SLACK)
    if isinstance(algorithm, SlidingWindowCounter):
        # allow_at < (index + buckets + 1) * width and now >= index * width.
        most = period + period / algorithm.buckets + SLACK
        return Bounds(most, most)
    return Bounds(period + SLACK, period + SLACK)


def limiter(algorithm: Algorithm, store: RedisStore, **kwargs: object) -> RateLimiter:
    return RateLimiter(algorithm, store=store, events=EventBus(), **kwargs)  # type: ignore[arg-type]


# -- decisions -----------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALL, ids=IDS)
def test_server_clock_admits_exactly_the_limit_then_rejects(
    algorithm: Algorithm, store: RedisStore
) -> None:
    lim = limiter(algorithm, store)
    decisions = [lim.try_acquire("alice") for _ in range(8)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert all(d.limit == 5 for d in decisions)
    # The exact bounds, whatever TIME says: a bucket refills one unit per period / limit;
    # a window or log entry ends at most a period after now; the sliding counter may
    # wait the period plus the rest of the current aligned sub-bucket (its newest count
    # leaves the window (buckets + 1) sub-buckets after the start of the one it is in).
    most = bounds(algorithm)
    assert all(0 < d.retry_after <= most.retry_after for d in decisions[5:])
    assert all(0 < d.reset_after <= most.reset_after for d in decisions)
    assert lim.try_acquire("bob").allowed  # keys are independent
    assert lim.store_errors == 0


@pytest.mark.parametrize("algorithm", ALL, ids=IDS)
async def test_async_client_admits_exactly_the_limit(algorithm: Algorithm, redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, timeout=TIMEOUT)
    try:
        lim = limiter(algorithm, store)
        decisions = await asyncio.gather(*(lim.atry_acquire("alice") for _ in range(8)))
        assert sum(d.allowed for d in decisions) == 5
        assert lim.store_errors == 0
    finally:
        await store.aclose()


@pytest.mark.parametrize("algorithm", ALL, ids=IDS)
def test_cost_larger_than_capacity_is_never_admitted(
    algorithm: Algorithm, store: RedisStore
) -> None:
    lim = limiter(algorithm, store)
    d = lim.try_acquire("alice", cost=6)
    assert not d.allowed and d.retry_after == math.inf
    assert lim.try_acquire("alice", cost=5).allowed


def test_sync_store_without_async_client_says_so(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = RedisStore(client)
    lim = limiter(TokenBucket(5), store)
    assert lim.try_acquire("k").allowed
    with pytest.raises(TypeError, match="only a sync client"):
        asyncio.run(lim.atry_acquire("k"))
    client.close()


async def test_async_only_store_refuses_sync_calls(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    store = RedisStore(client)
    lim = limiter(TokenBucket(5), store)
    assert (await lim.atry_acquire("k")).allowed
    with pytest.raises(TypeError, match="only an asyncio client"):
        lim.try_acquire("k")
    await client.aclose()


@pytest.mark.parametrize("options", [{"decode_responses": True}, {"protocol": 3}])
def test_client_options_do_not_change_decisions(redis_url: str, options: dict[str, Any]) -> None:
    store = RedisStore.from_url(redis_url, **options)
    lim = limiter(SlidingWindowCounter(2, LONG, buckets=3), store)
    assert [lim.try_acquire("k").allowed for _ in range(3)] == [True, True, False]
    assert lim.try_acquire("k").retry_after > 0
    store.close()


# -- expiry ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "lifetime"),
    [
        (TokenBucket(10, 60.0), 6.0),  # one token refills in period / limit
        (GCRA(10, 60.0, burst=3), 6.0),
        (LeakyBucket(10, 60.0, mode="shape"), 6.0),
        (FixedWindow(5, 10.0), 10.0),  # until the window ends
        (SlidingWindowLog(5, 7.0), 7.0),  # until the entry leaves the window
        (SlidingWindowCounter(5, 8.0, buckets=4), 10.0),  # (buckets + 1) sub-buckets
    ],
)
def test_every_key_gets_an_expiry_sized_to_its_state(
    algorithm: Algorithm, lifetime: float, store: RedisStore, admin: redis.Redis
) -> None:
    lim = limiter(algorithm, store, name="ttl")
    lim.try_acquire("alice")
    (key,) = admin.keys("rl:ttl:*")
    ttl_ms = admin.pttl(key)
    margin_ms = store.ttl_margin * 1000
    assert 0 < ttl_ms <= lifetime * 1000 + margin_ms


def test_no_key_without_expiry_after_a_mixed_run(
    store: RedisStore, redis_url: str, every_key_expires: Callable[[str], int]
) -> None:
    for algorithm in algorithms(3, 2.0):
        lim = limiter(algorithm, store)
        for i in range(40):
            lim.try_acquire(f"user-{i % 7}", cost=1 + i % 3)
    assert every_key_expires(redis_url) > 0


# -- key layout ---------------------------------------------------------------------------


def crc16(data: bytes) -> int:
    """CRC16-XMODEM, the hash Redis Cluster uses for key slots."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key: bytes) -> int:
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc16(key) % 16384


def test_key_layout(store: RedisStore) -> None:
    table = store.table(TokenBucket(5), time.monotonic, "api")
    assert table.redis_key("alice") == b"rl:api:{alice}:tb"
    assert (
        store.table(SlidingWindowLog(5), time.monotonic, "api").redis_key("a") == b"rl:api:{a}:sl"
    )
    assert store.table(FixedWindow(5), time.monotonic, "api").redis_key("a") == b"rl:api:{a}:fw"
    assert (
        store.table(SlidingWindowCounter(5, buckets=3), time.monotonic, "api").redis_key("a")
        == b"rl:api:{a}:sc3"
    )
    # Braces in a name cannot steal the hash tag from the key.
    braced = store.table(TokenBucket(5), time.monotonic, "a{b}%c")
    assert braced.redis_key("k") == b"rl:a%7Bb%7D%25c:{k}:tb"
    assert store.table(GCRA(5), time.monotonic, "x").redis_key("é") == "rl:x:{é}:gcra".encode()
    # Keys are escaped the same way, and the empty key gets a non-empty tag.
    assert table.redis_key("a{b}%") == b"rl:api:{a%7Bb%7D%25}:tb"
    assert table.redis_key("") == b"rl:api:{%}:tb"
    assert len({table.redis_key(k) for k in ["", "%", "%25", "{", "%7B"]}) == 5


def test_one_clients_keys_share_a_hash_slot_across_limiters(store: RedisStore) -> None:
    for user in ["alice", "bob:42", "", "we{ird}", "}x", "ip:2001:db8::/64"]:
        slots = {
            key_slot(store.table(algorithm, time.monotonic, f"limiter-{i}").redis_key(user))
            for i, algorithm in enumerate(ALL)
        }
        assert len(slots) == 1, user


def test_keys_longer_than_the_limit_or_not_strings_are_invalid(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, max_key_length=16)
    lim = limiter(TokenBucket(5), store)
    assert lim.try_acquire("x" * 16).allowed
    with pytest.raises(InvalidKey):
        lim.try_acquire("x" * 17)
    with pytest.raises(InvalidKey):
        lim.try_acquire(b"bytes")  # type: ignore[arg-type]
    assert lim.store_errors == 0
    store.close()


# -- scripts --------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALL, ids=IDS)
def test_decisions_survive_script_flush(
    algorithm: Algorithm, store: RedisStore, admin: redis.Redis
) -> None:
    lim = limiter(algorithm, store)
    assert lim.try_acquire("k").allowed
    admin.script_flush()
    assert lim.try_acquire("k").allowed  # NOSCRIPT -> EVAL, transparently
    name = "virtual_time" if isinstance(algorithm, TokenBucket | GCRA | LeakyBucket) else None
    if name:
        assert admin.script_exists(script(name).sha) == [True]
    assert lim.store_errors == 0


async def test_async_decisions_survive_script_flush(redis_url: str, admin: redis.Redis) -> None:
    store = RedisStore.from_url(redis_url)
    lim = limiter(FixedWindow(3, LONG), store)
    assert (await lim.atry_acquire("k")).allowed
    admin.script_flush()
    assert (await lim.atry_acquire("k")).allowed
    assert (await lim.atry_acquire("k")).allowed
    assert not (await lim.atry_acquire("k")).allowed
    assert lim.store_errors == 0
    await store.aclose()


# -- refunds (cancelled shaped waiters) -----------------------------------------------------


def shaped_pair(store: RedisStore) -> tuple[RateLimiter, RateLimiter, FakeClock, FakeClock]:
    algorithm = LeakyBucket(1, 1.0, capacity=3, mode="shape")
    mc, rc = FakeClock(100.0), FakeClock(100.0)
    memory = RateLimiter(algorithm, store=MemoryStore(), clock=mc, events=EventBus())
    remote = RateLimiter(algorithm, store=store, clock=rc, events=EventBus())
    return memory, remote, mc, rc


def test_refund_gives_back_a_shaped_slot_like_memory(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, clock="client", ttl_margin=60)
    memory, remote, _, _ = shaped_pair(store)
    for lim in (memory, remote):
        assert lim.try_acquire("k").delay == 0.0
        with pytest.raises(RateLimited):
            lim.acquire("k", timeout=0.5)  # would have to wait 1.0 s in the queue: refunded
    assert remote.try_acquire("k") == memory.try_acquire("k")
    store.close()


async def test_async_refund_runs_on_the_loop(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, clock="client", ttl_margin=60)
    memory, remote, _, _ = shaped_pair(store)
    for lim in (memory, remote):
        assert (await lim.atry_acquire("k")).delay == 0.0
        with pytest.raises(RateLimited):
            await lim.aacquire("k", timeout=0.5)
    await store.aclose()  # waits for the background refund
    store = RedisStore.from_url(redis_url, clock="client", ttl_margin=60)
    remote2 = RateLimiter(remote.algorithm, store=store, clock=remote.clock, events=EventBus())
    assert await remote2.atry_acquire("k") == memory.try_acquire("k")
    assert store.refund_errors == 0
    await store.aclose()


# -- construction ---------------------------------------------------------------------------


def test_options_are_validated(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="clock"):
            RedisStore(client, clock="wall")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="key_prefix"):
            RedisStore(client, key_prefix="{rl}:")
        with pytest.raises(ValueError, match="timeout"):
            RedisStore(client, timeout=0)
        with pytest.raises(ValueError, match="ttl_margin"):
            RedisStore(client, ttl_margin=-1)
        with pytest.raises(ValueError, match="max_key_length"):
            RedisStore(client, max_key_length=0)
        with pytest.raises(TypeError, match="client"):
            RedisStore(object())
        with pytest.raises(TypeError, match="async_client"):
            RedisStore(client, async_client=client)
        store = RedisStore(client)
        with pytest.raises(ValueError, match="algorithm"):
            RateLimiter(type("Custom", (TokenBucket,), {})(5), store=store)
    client.close()


def test_warns_when_a_sync_client_can_outlive_the_timeout(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)  # redis-py defaults: 5 s timeouts, retries
    with pytest.warns(RuntimeWarning, match="socket_timeout"):
        RedisStore(client, timeout=TIMEOUT)
    client.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RedisStore.from_url(redis_url, timeout=TIMEOUT).close()


# -- Redis Cluster ----------------------------------------------------------------------------


@pytest.fixture
def cluster_server() -> Iterator[RedisServer]:
    from tests.integration.conftest import _binary

    server = RedisServer(
        _binary(), extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
    ).start()
    try:
        with redis.Redis(port=server.port) as admin:
            command(admin, "CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            for _ in range(400):  # bounded: 20 s
                if b"cluster_state:ok" in command(admin, "CLUSTER", "INFO"):
                    break
                time.sleep(0.05)
            else:
                pytest.fail("single-node cluster did not reach cluster_state:ok")
        yield server
    finally:
        server.close()


def test_works_on_redis_cluster_with_keys_in_one_slot(cluster_server: RedisServer) -> None:
    cluster = RedisCluster(host="127.0.0.1", port=cluster_server.port, socket_timeout=TIMEOUT)
    store = RedisStore(cluster)
    for i, algorithm in enumerate(algorithms(2, LONG)):
        lim = limiter(algorithm, store, name=f"c{i}")
        assert [lim.try_acquire("alice").allowed for _ in range(3)] == [True, True, False]
        assert lim.store_errors == 0
    keys = cluster.keys("*", target_nodes=RedisCluster.ALL_NODES)
    assert len(keys) == 7
    slots = {command(cluster, "CLUSTER KEYSLOT", k) for k in keys}
    assert slots == {command(cluster, "CLUSTER KEYSLOT", "alice")}
    # The test's own crc16 agrees with the server.
    assert {key_slot(k if isinstance(k, bytes) else k.encode()) for k in keys} == slots
    cluster.close()


async def test_works_on_async_redis_cluster(cluster_server: RedisServer) -> None:
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

    cluster = AsyncRedisCluster(host="127.0.0.1", port=cluster_server.port)
    store = RedisStore(cluster)
    lim = limiter(SlidingWindowLog(2, LONG), store)
    assert [(await lim.atry_acquire("bob")).allowed for _ in range(3)] == [True, True, False]
    assert lim.store_errors == 0
    await cluster.aclose()


def test_same_name_shares_state_across_stores_other_kinds_do_not(redis_url: str) -> None:
    one, two = RedisStore.from_url(redis_url), RedisStore.from_url(redis_url)
    a = limiter(TokenBucket(2, LONG), one, name="api")
    b = limiter(TokenBucket(2, LONG), two, name="api")  # another process, same limit
    other_kind = limiter(GCRA(2, LONG), two, name="api")
    assert [a.try_acquire("k").allowed, b.try_acquire("k").allowed] == [True, True]
    assert not a.try_acquire("k").allowed and not b.try_acquire("k").allowed
    assert other_kind.try_acquire("k").allowed  # its own state, as in memory
    one.close()
    two.close()
