"""Whatever the client raises, a store call raises only ``StoreUnavailable``.

Issue 9: a raw ``AttributeError`` from redis-py's cluster client left
``RateLimiter.atry_acquire`` (a 500 in the middleware).  Not every failure
of a client is a ``RedisError``: here a real client's credential provider
(a token service, say) raises ``ValueError`` while connecting, which redis-py
passes through untouched.  The limiter (sync and async) and the breaker
(both outage policies) must answer by their ``on_store_error`` policy, count
the failure and let nothing else out; the same on a cluster client.
"""

from __future__ import annotations

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider
from redis.retry import Retry

from resilience import CircuitBreaker, CircuitOpen, FixedWindow, RateLimiter
from resilience.events import EventBus
from resilience.redis import RedisBreakerStore, RedisStore
from resilience.redis.testing import RedisClusterNodes, RedisServer

pytestmark = [pytest.mark.redis]

LONG = 86_400.0


class TokenServiceDown(CredentialProvider):
    """A credential provider whose backend is failing: raises a plain ``ValueError``."""

    def get_credentials(self) -> tuple[str, str]:
        raise ValueError("token service unavailable")

    async def get_credentials_async(self) -> tuple[str, str]:
        raise ValueError("token service unavailable")


def _limiter(store: RedisStore, policy: str) -> RateLimiter:
    return RateLimiter(
        FixedWindow(5, LONG),
        store=store,
        name=f"errors-{policy}",
        on_store_error=policy,  # type: ignore[arg-type]
        events=EventBus(),
    )


def _sync_client(port: int) -> redis.Redis:
    return redis.Redis(
        port=port,
        credential_provider=TokenServiceDown(),
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
def test_sync_limiter_turns_any_client_error_into_its_policy(
    redis_server: RedisServer, policy: str
) -> None:
    client = _sync_client(redis_server.port)
    store = RedisStore(client, timeout=0.5)
    limiter = _limiter(store, policy)
    for _ in range(3):
        assert limiter.try_acquire("alice").allowed is (policy == "fail_open")
    assert limiter.store_errors == 3
    store.close()
    client.close()


async def test_async_limiter_turns_any_client_error_into_its_policy(
    redis_server: RedisServer,
) -> None:
    client = redis.asyncio.Redis(port=redis_server.port, credential_provider=TokenServiceDown())
    store = RedisStore(client, timeout=0.5)
    limiter = _limiter(store, "fail_closed")
    for _ in range(3):
        assert not (await limiter.atry_acquire("alice")).allowed
    assert limiter.store_errors == 3
    await store.aclose()
    await client.aclose()


def _boom() -> str:
    return "ran"


async def test_breaker_turns_any_client_error_into_its_policy(redis_server: RedisServer) -> None:
    sync = _sync_client(redis_server.port)
    aio = redis.asyncio.Redis(port=redis_server.port, credential_provider=TokenServiceDown())
    store = RedisStore(sync, async_client=aio, timeout=0.5)
    open_ = CircuitBreaker("errors-open", store=RedisBreakerStore(store, events=EventBus()))
    closed = CircuitBreaker(
        "errors-closed",
        store=RedisBreakerStore(store, on_store_error="fail_closed", events=EventBus()),
    )
    assert open_.call(_boom) == "ran"

    async def aboom() -> str:
        return "ran"

    assert await open_.acall(aboom) == "ran"
    with pytest.raises(CircuitOpen):
        closed.call(_boom)
    with pytest.raises(CircuitOpen):
        await closed.acall(aboom)
    store.close()
    await store.aclose()
    sync.close()
    await aio.aclose()


async def test_cluster_clients_turn_any_client_error_into_the_policy(
    redis_cluster: RedisClusterNodes,
) -> None:
    port = redis_cluster.ports[0]
    sync = redis.cluster.RedisCluster(host="127.0.0.1", port=port)  # loads the map cleanly
    aio = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=port)
    await aio.initialize()
    # From now on every new connection fails in the credential provider.
    for client in (sync, aio):
        for node in client.get_nodes():
            kwargs = (
                node.redis_connection.connection_pool.connection_kwargs
                if client is sync
                else node.connection_kwargs
            )
            kwargs["credential_provider"] = TokenServiceDown()
    store = RedisStore(sync, async_client=aio, timeout=0.5)
    limiter = _limiter(store, "fail_closed")
    for _ in range(3):
        assert not limiter.try_acquire("alice").allowed
        assert not (await limiter.atry_acquire("alice")).allowed
    assert limiter.store_errors == 6
    store.close()
    await store.aclose()
    sync.close()
    await aio.aclose()
