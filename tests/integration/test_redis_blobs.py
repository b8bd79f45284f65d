"""RedisBlobStore against a real redis-server: the store contract, layout, TTLs, async clients."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from resilience import ClaimCheck, PayloadMissing
from resilience.events import EventBus
from resilience.redis import RedisBlobStore
from resilience.redis.testing import RedisClusterNodes
from resilience.testing import FakeClock
from tests.claimcheck_contract import SECRET, check_store_contract

pytestmark = pytest.mark.redis


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as c:
        yield c


def test_store_contract(
    client: redis.Redis, every_key_expires: Callable[[str], int], redis_url: str
) -> None:
    check_store_contract(lambda: RedisBlobStore(client, chunk_size=4096))
    every_key_expires(redis_url)


def test_layout_one_slot_per_payload_and_ttl_on_every_key(
    client: redis.Redis, redis_url: str, every_key_expires: Callable[[str], int]
) -> None:
    store = RedisBlobStore(client, chunk_size=1000, max_ttl=500.0)
    cc = ClaimCheck(store, SECRET, threshold=1, ttl=60.0, events=EventBus())
    data = os.urandom(10_500)
    env = cc.check_in(iter([data[:10], data[10:]]))
    ticket = cc.ticket(env)
    assert ticket is not None
    keys = sorted(k.decode() for k in client.keys("*"))
    payload_keys = [k for k in keys if not k.startswith("rcc:d:")]
    assert len(payload_keys) == 11 + 2  # 11 chunks, meta, refs
    # one hash tag, so one cluster slot, for every key of the payload
    assert all(k.startswith(f"rcc:{{{ticket.blob_id}}}:") for k in payload_keys)
    assert keys.count(f"rcc:d:{ticket.digest}") == 1
    assert every_key_expires(redis_url) == 14
    assert all(0 < client.pttl(k) <= 60_000 for k in keys)
    assert cc.redeem(env) == data
    cc.release(env)
    assert client.keys("*") == []


def test_no_expiry_means_max_ttl(client: redis.Redis) -> None:
    store = RedisBlobStore(client, max_ttl=500.0)
    cc = ClaimCheck(store, SECRET, threshold=1, events=EventBus())
    cc.check_in(b"payload")
    assert all(400_000 < client.pttl(k) <= 500_000 for k in client.keys("*"))


def test_aborted_upload_is_deleted_and_abandoned_ones_expire(client: redis.Redis) -> None:
    store = RedisBlobStore(client, chunk_size=100, upload_ttl=30.0)
    writer = store.begin()
    writer.write(b"x" * 1000)
    keys = client.keys("*")
    assert len(keys) == 10 and all(0 < client.pttl(k) <= 30_000 for k in keys)
    writer.abort()
    assert client.keys("*") == []


def test_hostile_ids_touch_nothing(client: redis.Redis) -> None:
    store = RedisBlobStore(client)
    client.set("rcc:{x}:m", "not ours")
    for bad in ("x", "*", "x}:m", "../", "0" * 31):
        with pytest.raises(PayloadMissing):
            store.reader(bad)
        assert store.release(bad, "r") is False
        assert store.delete(bad) is False
    assert client.get("rcc:{x}:m") == b"not ours"


async def test_async_client(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        store = RedisBlobStore(client, chunk_size=1000)
        clock = FakeClock(1000.0)
        cc = ClaimCheck(store, SECRET, threshold=10, ttl=10.0, clock=clock, events=EventBus())
        data = os.urandom(5000)
        a = await cc.acheck_in(data)
        b = await cc.acheck_in(data)
        assert await cc.aredeem(a) == data
        assert await cc.arelease(a) is False
        assert await cc.arelease(b) is True
        with pytest.raises(PayloadMissing):
            await cc.aredeem(b)
        with pytest.raises(TypeError, match="asyncio client"):
            cc.check_in(data)
        c = cc.ticket(await cc.acheck_in(data))
        assert c is not None
        clock.advance(10)
        assert await store.aexpired(clock.time()) == [c.blob_id]
        assert await cc.asweep() == 1
        with pytest.raises(PayloadMissing):
            await store.areader(c.blob_id)
        assert await client.keys("*") == []
    finally:
        await client.aclose()


class _RacingClient:
    """A redis.Redis whose first ``SET ... NX`` (a writer claiming the content index)
    is followed, before the writer's next command, by ``meanwhile()``."""

    def __init__(self, client: redis.Redis, meanwhile: Callable[[], object]) -> None:
        self._client = client
        self._meanwhile: Callable[[], object] | None = meanwhile

    def execute_command(self, *args: object, **options: object) -> object:
        reply = self._client.execute_command(*args, **options)
        if args[0] == "SET" and "NX" in args and self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile()
        return reply

    def register_script(self, source: str) -> object:
        return self._client.register_script(source)


def test_the_same_bytes_checked_in_concurrently_are_stored_once(client: redis.Redis) -> None:
    """A second check-in landing while the first files the same bytes shares its copy."""
    data = os.urandom(20_000)
    other = ClaimCheck(RedisBlobStore(client, chunk_size=4096), SECRET, threshold=1,
                       events=EventBus())  # fmt: skip
    second: list[object] = []
    racing = RedisBlobStore(
        _RacingClient(client, lambda: second.append(other.check_in(data))), chunk_size=4096
    )
    first = ClaimCheck(racing, SECRET, threshold=1, events=EventBus()).check_in(data)
    [env] = second
    a, b = other.ticket(first), other.ticket(env)  # type: ignore[arg-type]
    assert a is not None and b is not None
    assert a.blob_id == b.blob_id  # one copy
    assert len(client.keys("rcc:{*}:m")) == 1
    assert other.release(first) is False  # the other ticket still holds it
    assert other.redeem(env) == data
    assert other.release(env) is True
    assert client.keys("*") == []


def test_content_index_lives_as_long_as_the_payload(client: redis.Redis) -> None:
    """A longer-lived second ticket extends the payload's keys and its content index alike,
    so the same bytes checked in once the first ticket lapsed still find the one copy."""
    store = RedisBlobStore(client, max_ttl=500.0)
    short = ClaimCheck(store, SECRET, threshold=1, ttl=10.0, events=EventBus())
    forever = ClaimCheck(store, SECRET, threshold=1, events=EventBus())
    ticket = short.ticket(short.check_in(b"payload"))
    assert ticket is not None
    forever.check_in(b"payload")
    index = f"rcc:d:{ticket.digest}"
    assert client.pttl(index) > 400_000
    assert all(400_000 < client.pttl(k) <= 500_000 for k in client.keys("*"))


async def test_expired_and_sweep_on_a_cluster(redis_cluster: RedisClusterNodes) -> None:
    """On Redis Cluster, SCAN answers per node: expired() and sweep() see every payload."""
    port = redis_cluster.ports[0]
    sync = redis.cluster.RedisCluster(host="127.0.0.1", port=port)
    aio = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=port)
    try:
        prefix = f"rcc-{os.urandom(4).hex()}:"
        clock = FakeClock(1_700_000_000.0)
        for client in (sync, aio):
            store = RedisBlobStore(client, prefix=prefix, chunk_size=1000)
            cc = ClaimCheck(store, SECRET, threshold=1, ttl=60.0, clock=clock, events=EventBus())
            envs = [await cc.acheck_in(os.urandom(3000)) for _ in range(12)]
            ids = sorted(cc.ticket(e).blob_id for e in envs)  # type: ignore[union-attr]
            clock.advance(61)
            if client is sync:
                assert store.expired(clock.time()) == ids
                assert cc.sweep() == 12
            else:
                assert await store.aexpired(clock.time()) == ids
                assert await cc.asweep() == 12
            assert list(sync.scan_iter(match=f"{prefix}*")) == []
    finally:
        sync.close()
        await aio.aclose()
