"""Issue 9, item 7, on real servers (uvicorn and aiohttp) with a real client (httpx).

- A full key store is server capacity, not the client's quota: 503 with its
  own problem type and ``Retry-After``, counted as an event, while a client
  the store already tracks still gets its ordinary 429.
- A policy name a header cannot carry is refused at construction, in both
  adapters; with ``headers=None`` the body carries it unaltered.
- An exception escaping the app: the 500 is built outside the middleware
  (by Starlette/uvicorn, or by aiohttp after every middleware returned).
  aiohttp's ``rate_limit_headers_hook`` reaches that response and puts the
  headers on it; ASGI has no such hook, so there the 500 carries none.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiohttp import web
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from resilience import GCRA, RateLimiter
from resilience.aiohttp import rate_limit_headers_hook, rate_limit_middleware
from resilience.asgi import RateLimitMiddleware, header
from resilience.events import Event, EventBus, StoreFailed
from resilience.ratelimit.memory_store import MemoryStore
from resilience.testing import FakeClock
from resilience.web.problem import STORE_FULL
from tests.integration.servers import ratelimit_fields, serve_aiohttp, serve_asgi

KINDS = ["asgi", "aiohttp"]


async def _ok(request: Request) -> Response:
    return PlainTextResponse("hello")


async def _boom(request: Request) -> Response:
    raise RuntimeError("the handler failed")


async def _aio_ok(request: web.Request) -> web.StreamResponse:
    return web.Response(text="hello")


async def _aio_boom(request: web.Request) -> web.StreamResponse:
    raise RuntimeError("the handler failed")


@asynccontextmanager
async def serving(
    kind: str, limiter: RateLimiter, *, hook: bool = True, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    if kind == "asgi":
        app: Any = Starlette(
            routes=[Route("/", _ok), Route("/boom", _boom)],
            middleware=[Middleware(RateLimitMiddleware, limiter=limiter, **options)],
        )
        server = serve_asgi(app)
    else:
        app = web.Application(middlewares=[rate_limit_middleware(limiter, **options)])
        app.router.add_get("/", _aio_ok)
        app.router.add_get("/boom", _aio_boom)
        if hook:
            app.on_response_prepare.append(rate_limit_headers_hook)
        server = serve_aiohttp(app)
    async with server as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


@pytest.mark.parametrize("kind", KINDS)
async def test_a_full_key_store_is_a_503_with_its_own_type_not_a_429(kind: str) -> None:
    clock = FakeClock(1000.0)
    events: list[Event] = []
    limiter = RateLimiter(
        GCRA(1, 3600.0),
        store=MemoryStore(max_keys=2),
        clock=clock,
        name="api",
        events=EventBus([events.append]),
    )
    async with serving(kind, limiter, key=header("X-API-Key")) as client:
        for api_key in ("alice", "bob"):  # the store now holds two live keys
            assert (await client.get("/", headers={"X-API-Key": api_key})).status_code == 200
        full = await client.get("/", headers={"X-API-Key": "carol"})
        assert full.status_code == 503
        assert full.headers["content-type"] == "application/problem+json"
        document = json.loads(full.content)
        assert document["type"] == STORE_FULL and document["status"] == 503
        assert document["policy"] == "api" and "violated-policies" not in document
        assert 1 <= int(full.headers["retry-after"]) <= 3600
        assert "ratelimit" not in full.headers  # carol has no quota state to report
        # A tracked client over its own limit still gets the ordinary 429.
        own = await client.get("/", headers={"X-API-Key": "alice"})
        assert own.status_code == 429
        assert json.loads(own.content)["type"].endswith("#quota-exceeded")
    counted = [e for e in events if isinstance(e, StoreFailed)]
    assert [e.action for e in counted] == ["reject"]
    assert counted[0].error.startswith("StoreFull") and limiter.store_errors == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_name_the_headers_cannot_carry_is_refused_at_construction(kind: str) -> None:
    limiter = RateLimiter(GCRA(5, 60.0), name="n\u00e4me")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    with pytest.raises(ValueError, match="printable ASCII"):
        if kind == "asgi":
            RateLimitMiddleware(app, limiter)
        else:
            rate_limit_middleware(limiter, headers="both")


@pytest.mark.parametrize("kind", KINDS)
async def test_without_headers_the_body_carries_the_name_unaltered(kind: str) -> None:
    limiter = RateLimiter(GCRA(1, 3600.0), clock=FakeClock(5.0), name="n\u00e4me")
    async with serving(kind, limiter, headers=None) as client:
        assert (await client.get("/")).status_code == 200
        refused = await client.get("/")
        assert refused.status_code == 429 and "ratelimit" not in refused.headers
        assert json.loads(refused.content)["policy"] == "n\u00e4me"


async def test_aiohttp_500_from_a_failing_handler_carries_the_headers_with_the_hook() -> None:
    limiter = RateLimiter(GCRA(5, 60.0), clock=FakeClock(5.0), name="api")
    async with serving("aiohttp", limiter) as client:
        failed = await client.get("/boom")
        assert failed.status_code == 500
        policy, limit = ratelimit_fields(failed.headers)
        assert policy == {"q": 5, "w": 60} and limit["r"] == 4
        # The next request sees the failed one counted, as the headers said.
        assert ratelimit_fields((await client.get("/")).headers)[1]["r"] == 3


@pytest.mark.parametrize("kind", KINDS)
async def test_the_500_is_built_outside_the_middleware(kind: str) -> None:
    """Without a prepare hook neither adapter can reach that response (the one difference)."""
    limiter = RateLimiter(GCRA(5, 60.0), clock=FakeClock(5.0), name="api")
    async with serving(kind, limiter, hook=False) as client:
        failed = await client.get("/boom")
        assert failed.status_code == 500
        assert "ratelimit" not in failed.headers and "ratelimit-policy" not in failed.headers
        assert ratelimit_fields((await client.get("/")).headers)[1]["r"] == 3
