"""API keys never reach Redis key names, events or logs in clear (real uvicorn, aiohttp, Redis).

Requests carrying an ``X-API-Key`` go through the real middleware to a real
``redis-server``; then ``SCAN`` lists every key the store wrote, and every
event and rendered log line is searched for the credential.  A readable
``secret=False`` twin proves the searches can find a value when it is there.
A ``RedisStore`` with only a sync client is refused when the middleware is
built, not with a 500 on every request.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import structlog
from aiohttp import web
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from resilience import GCRA, CircuitBreaker, RateLimiter
from resilience.asgi import CircuitBreakerMiddleware, RateLimitMiddleware, Rule, header
from resilience.events import Event, EventBus, StructlogSink
from resilience.testing import FakeClock
from tests.integration.servers import serve_aiohttp, serve_asgi

redis = pytest.importorskip("redis")
redis_asyncio = pytest.importorskip("redis.asyncio")
from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

from resilience.aiohttp import circuit_breaker_middleware, rate_limit_middleware  # noqa: E402
from resilience.redis import RedisBreakerStore, RedisStore  # noqa: E402

pytestmark = pytest.mark.redis

SECRET = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
OTHER = "sk_live_Zq81nB0bQmW2xYy7TtPp3aaa"


class Recorder:
    """Every event (debug included) plus the log lines a structlog sink renders for them."""

    min_level = "debug"

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.log = io.StringIO()
        logger = structlog.wrap_logger(
            structlog.PrintLogger(self.log),
            processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
        )
        self.structlog = StructlogSink(logger, min_level="debug")

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.structlog(event)

    def text(self) -> str:
        return repr([e.fields() for e in self.events]) + self.log.getvalue()


def scanned(url: str) -> list[str]:
    with redis.Redis.from_url(url) as client:
        keys = [k.decode() for k in client.scan_iter(count=1000)]
        values = [repr(client.dump(k)) for k in keys]
    return keys + values


def starlette_app() -> Starlette:
    async def hello(request: Request) -> Response:
        return PlainTextResponse("hello")

    return Starlette(routes=[Route("/", hello)])


async def hello_aiohttp(request: web.Request) -> web.Response:
    return web.Response(text="hello")


@asynccontextmanager
async def serving(kind: str, limiter: RateLimiter, key: Any) -> AsyncIterator[str]:
    if kind == "asgi":
        async with serve_asgi(RateLimitMiddleware(starlette_app(), limiter, key=key)) as url:
            yield url
        return
    app = web.Application(middlewares=[rate_limit_middleware(limiter, key=key)])
    app.router.add_get("/", hello_aiohttp)
    async with serve_aiohttp(app) as url:
        yield url


async def drive(url: str) -> list[int]:
    statuses = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        for value in (SECRET, SECRET, SECRET, SECRET, OTHER):
            response = await http.get("/", headers={"X-API-Key": value})
            statuses.append(response.status_code)
            assert SECRET not in repr(response.headers) and SECRET not in response.text
    return statuses


@pytest.mark.parametrize("kind", ["asgi", "aiohttp"])
@pytest.mark.parametrize("secret", [True, False])
async def test_api_keys_reach_redis_events_and_logs_only_hashed(
    kind: str, secret: bool, redis_url: str
) -> None:
    store = RedisStore.from_url(redis_url, timeout=2.0)
    recorder = Recorder()
    limiter = RateLimiter(
        GCRA(2, 60.0), store=store, clock=FakeClock(), name="api", events=EventBus([recorder])
    )
    try:
        async with serving(kind, limiter, header("X-API-Key", secret=secret)) as url:
            statuses = await drive(url)
    finally:
        await store.aclose()
    assert statuses == [200, 200, 429, 429, 200]  # the digest still counts per client
    stored = scanned(redis_url)
    assert len([k for k in stored if k.startswith("rl:api:")]) == 2  # one key per API key
    seen = recorder.text()
    assert "rate_limited" in seen  # the rejections were logged: the search has something to read
    if secret:
        assert not any(SECRET in item or "sk_live" in item for item in stored), stored
        assert "sk_live" not in seen
        assert any(k.startswith("rl:api:{x-api-key#") for k in stored)
    else:  # the readable opt-out: the same searches find the value
        assert f"rl:api:{{x-api-key={SECRET}}}:gcra" in stored
        assert SECRET in seen


async def test_a_configured_hash_key_is_shared_by_every_process(redis_url: str) -> None:
    """Two middlewares (two workers) with the same hash_key share one client's limit on Redis."""
    shared = b"deployment-wide secret, 32 bytes"
    stores = [RedisStore.from_url(redis_url, timeout=2.0) for _ in range(2)]
    limiters = [RateLimiter(GCRA(2, 60.0), store=s, name="api") for s in stores]
    statuses = []
    try:
        async with (
            serving("asgi", limiters[0], header("X-API-Key", hash_key=shared)) as one,
            serving("asgi", limiters[1], header("X-API-Key", hash_key=shared)) as two,
            httpx.AsyncClient(timeout=10) as http,
        ):
            for url in (one, two, one, two):
                response = await http.get(url + "/", headers={"X-API-Key": SECRET})
                statuses.append(response.status_code)
    finally:
        for store in stores:
            await store.aclose()
    assert statuses == [200, 200, 429, 429]
    assert not any("sk_live" in item for item in scanned(redis_url))


async def test_a_sync_only_redis_store_is_refused_when_the_middleware_is_built(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(
        redis_url, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    try:
        limiter = RateLimiter(GCRA(2, 60.0), store=RedisStore(client, timeout=2.0), name="api")
        assert limiter.try_acquire("k").allowed  # a working store, for sync callers
        with pytest.raises(ValueError, match=r"limiter 'api'.*only a sync client"):
            RateLimitMiddleware(starlette_app(), limiter)
        with pytest.raises(ValueError, match=r"limiter 'api'.*only a sync client"):
            rate_limit_middleware(limiter)
        memory = RateLimiter(GCRA(2, 60.0), name="memory")
        with pytest.raises(ValueError, match="rule limiter 'api'"):
            RateLimitMiddleware(starlette_app(), memory, rules=[Rule("/api/**", limiter=limiter)])
        behind = RateLimiter(GCRA(2, 60.0), name="primary", fallback=limiter)
        with pytest.raises(ValueError, match="fallback 'api'"):
            RateLimitMiddleware(starlette_app(), behind)
        # The breaker middlewares: the same check, for shared breaker state.
        for store in (
            RedisStore(client, timeout=2.0),
            RedisBreakerStore(RedisStore(client, timeout=2.0)),
        ):
            breaker = CircuitBreaker("shared", store=store)
            assert breaker.call(lambda: "sync callers work") == "sync callers work"
            with pytest.raises(ValueError, match=r"breaker 'shared'.*only a sync client"):
                CircuitBreakerMiddleware(starlette_app(), breaker)
            with pytest.raises(ValueError, match=r"breaker 'shared'.*only a sync client"):
                circuit_breaker_middleware(breaker)
        # With an asyncio client next to the sync one, the same limiter serves requests.
        aio = redis_asyncio.Redis.from_url(redis_url)
        both = RateLimiter(
            GCRA(2, 60.0), store=RedisStore(client, async_client=aio, timeout=2.0), name="both"
        )
        try:
            async with (
                serve_asgi(RateLimitMiddleware(starlette_app(), both)) as url,
                httpx.AsyncClient(base_url=url, timeout=10) as http,
            ):
                assert (await http.get("/")).status_code == 200
        finally:
            await aio.aclose()
    finally:
        client.close()
