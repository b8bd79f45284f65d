"""FailoverClient with a breaker whose state lives in Redis: every breaker call is an await.

A caller may be cancelled while such a call waits (a slow or hung Redis): the
response an origin already gave must be released then, not left holding its
connection.  The origin freezes Redis (``SIGSTOP``) when it answers, so the
breaker call after the answer hangs until the test cancels the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from resilience import CircuitBreaker, EventBus
from resilience.aiohttp import FailoverClient
from resilience.redis import RedisStore
from resilience.redis.breaker import RedisBreakerStore
from resilience.redis.testing import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


async def _origin(handler: Callable[[web.Request], Any]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def store(fresh_redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(fresh_redis_server.url, timeout=10.0)  # a hang, not an error
    try:
        yield store
    finally:
        fresh_redis_server.thaw()  # never leave a frozen process behind
        await store.aclose()
        store.close()


@pytest.mark.parametrize("shared", ["primary", "secondary"])
async def test_a_caller_cancelled_during_a_breaker_write_releases_the_response(
    shared: str, store: RedisStore, fresh_redis_server: RedisServer
) -> None:
    """``shared="primary"``: the hang is the primary's breaker recording its 503;
    ``"secondary"``: it is the secondary's breaker granting the failover."""
    answered = asyncio.Event()

    async def failing(request: web.Request) -> web.Response:
        fresh_redis_server.freeze()
        answered.set()
        return web.Response(status=503, text="x" * (1 << 20))  # too big to be read ahead

    async def serving(request: web.Request) -> web.Response:
        return web.Response(text="secondary")

    primary, primary_url = await _origin(failing)
    secondary, secondary_url = await _origin(serving)
    redis_breaker = CircuitBreaker(f"{shared}-shared", store=RedisBreakerStore(store))
    memory_breaker = CircuitBreaker("local")
    breakers = (
        (redis_breaker, memory_breaker) if shared == "primary" else (memory_breaker, redis_breaker)
    )
    try:
        async with aiohttp.ClientSession() as session:
            client = FailoverClient(
                primary_url,
                secondary_url,
                session=session,
                breakers=breakers,
                health_interval=None,
                events=EventBus(),
            )
            async with client:
                caller = asyncio.create_task(client.get("/x"))
                async with asyncio.timeout(10):
                    await answered.wait()
                await asyncio.sleep(0.2)  # the answer is in; the breaker call hangs on Redis
                assert not caller.done()
                caller.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await caller
                connector: Any = session.connector
                assert len(connector._acquired) == 0  # the 503's connection was let go
    finally:
        fresh_redis_server.thaw()
        await primary.cleanup()
        await secondary.cleanup()


async def test_asnapshot_reads_a_breaker_on_an_asyncio_only_redis_store(
    fresh_redis_server: RedisServer,
) -> None:
    """``snapshot()`` needs a sync client for a Redis breaker; ``asnapshot()`` does not."""
    import redis.asyncio

    async def serving(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    primary, primary_url = await _origin(serving)
    secondary, secondary_url = await _origin(serving)
    async_only = RedisStore(redis.asyncio.Redis.from_url(fresh_redis_server.url))
    breakers = (CircuitBreaker("p", store=RedisBreakerStore(async_only)), CircuitBreaker("s"))
    try:
        client = FailoverClient(
            primary_url, secondary_url, breakers=breakers, health_interval=None, events=EventBus()
        )
        async with client:
            async with client.get("/x") as resp:
                assert resp.status == 200
            snap = await client.asnapshot()
            assert snap.active == "primary"
            assert (snap.primary.breaker, snap.secondary.breaker) == ("closed", "closed")
            await breakers[0].aforce_open()
            assert (await client.asnapshot()).primary.breaker == "open"
            with pytest.raises(TypeError, match="asyncio client"):
                client.snapshot()  # the sync read has no client to use: a clear error
    finally:
        await async_only.aclose()
        await primary.cleanup()
        await secondary.cleanup()
