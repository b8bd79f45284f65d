"""BulkheadMiddleware (load shedding) and CircuitBreakerMiddleware behind uvicorn.

A full bulkhead answers 503 with Retry-After while the admitted requests
finish normally; an open circuit answers 503 without calling the app, and
lets a probe through once its open time (on a FakeClock) has passed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from resilience import RateLimiter, TokenBucket
from resilience.asgi import BulkheadMiddleware, CircuitBreakerMiddleware, RateLimitMiddleware
from resilience.breaker import CircuitBreaker, CircuitState
from resilience.bulkhead import Bulkhead
from resilience.testing import FakeClock
from tests.integration.servers import serve_asgi

FRAMEWORKS = ["starlette", "fastapi"]


class Probe:
    def __init__(self) -> None:
        self.calls = 0
        self.inside = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.lifespan: list[str] = []


def build_app(kind: str, probe: Probe, middleware: list[Middleware]) -> Any:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        probe.lifespan.append("startup")
        yield
        probe.lifespan.append("shutdown")

    async def ok(request: Request) -> Response:
        probe.calls += 1
        return PlainTextResponse("ok")

    async def fail(request: Request) -> Response:
        probe.calls += 1
        return PlainTextResponse("broken", status_code=502)

    async def boom(request: Request) -> Response:
        probe.calls += 1
        raise RuntimeError("boom")

    async def slow(request: Request) -> Response:
        probe.calls += 1
        probe.inside += 1
        if probe.inside >= 2:
            probe.entered.set()
        async with asyncio.timeout(10):
            await probe.release.wait()
        probe.inside -= 1
        return PlainTextResponse("slow")

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    routes = [("/", ok), ("/fail", fail), ("/boom", boom), ("/slow", slow)]
    if kind == "starlette":
        return Starlette(
            routes=[*(Route(p, e) for p, e in routes), WebSocketRoute("/ws", echo)],
            middleware=middleware,
            lifespan=lifespan,
        )
    app = FastAPI(lifespan=lifespan)
    for path, endpoint in routes:
        app.add_api_route(path, endpoint)
    app.add_api_websocket_route("/ws", echo)
    for entry in reversed(middleware):
        app.add_middleware(entry.cls, *entry.args, **entry.kwargs)
    return app


@asynccontextmanager
async def running(
    kind: str, probe: Probe, *middleware: Middleware
) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve_asgi(build_app(kind, probe, list(middleware))) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield client


def problem(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = json.loads(response.content)
    assert body["status"] == response.status_code
    assert body["type"].endswith("#temporary-reduced-capacity")
    return body


async def _websocket_works(client: httpx.AsyncClient) -> None:
    url = str(client.base_url).replace("http://", "ws://") + "/ws"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws,
    ):
        assert await asyncio.wait_for(ws.receive_str(), 10) == "hello"


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_full_bulkhead_sheds_load_with_503(kind: str) -> None:
    probe = Probe()
    bulkhead = Bulkhead("db", max_concurrent=2)
    async with running(kind, probe, Middleware(BulkheadMiddleware, bulkhead, retry_after=2.5)) as c:
        slow = [asyncio.create_task(c.get("/slow")) for _ in range(2)]
        async with asyncio.timeout(10):
            await probe.entered.wait()
        assert bulkhead.active == 2
        shed = await c.get("/")
        assert shed.status_code == 503
        assert shed.headers["retry-after"] == "3"
        assert problem(shed)["policy"] == "db"
        await _websocket_works(c)  # websockets take no slot
        probe.release.set()
        assert [r.status_code for r in await asyncio.gather(*slow)] == [200, 200]
        assert (await c.get("/")).status_code == 200
        assert bulkhead.active == 0
    assert probe.lifespan == ["startup", "shutdown"]


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_bulkhead_queue_then_shed(kind: str) -> None:
    probe = Probe()
    bulkhead = Bulkhead("db", max_concurrent=2, max_queue=1)
    async with running(kind, probe, Middleware(BulkheadMiddleware, bulkhead)) as c:
        slow = [asyncio.create_task(c.get("/slow")) for _ in range(2)]
        async with asyncio.timeout(10):
            await probe.entered.wait()
        queued = asyncio.create_task(c.get("/"))
        async with asyncio.timeout(10):
            while bulkhead.queued < 1:  # noqa: ASYNC110 - the bulkhead offers no event to wait on
                await asyncio.sleep(0.01)
        shed = await c.get("/")
        assert (shed.status_code, shed.headers["retry-after"]) == (503, "1")
        probe.release.set()
        responses = await asyncio.gather(*slow, queued)
        assert [r.status_code for r in responses] == [200, 200, 200]


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_open_circuit_fails_fast_then_recovers(kind: str) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("upstream", consecutive_failures=2, open_duration=30.0, clock=clock)
    probe = Probe()
    async with running(kind, probe, Middleware(CircuitBreakerMiddleware, breaker)) as c:
        assert (await c.get("/")).status_code == 200
        assert [(await c.get("/fail")).status_code for _ in range(2)] == [502, 502]
        assert breaker.state == CircuitState.OPEN
        calls = probe.calls
        fast = await c.get("/")
        assert fast.status_code == 503
        assert fast.headers["retry-after"] == "30"
        assert problem(fast)["policy"] == "upstream"
        assert probe.calls == calls  # the app was not called
        await _websocket_works(c)  # websockets pass through even while open
        clock.advance(29.5)
        assert (await c.get("/")).headers["retry-after"] == "1"
        clock.advance(0.5)
        assert (await c.get("/")).status_code == 200  # the probe
        assert breaker.snapshot().state == CircuitState.CLOSED
        assert (await c.get("/")).status_code == 200


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_exceptions_count_as_failures(kind: str) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("upstream", consecutive_failures=2, open_duration=30.0, clock=clock)
    async with running(kind, Probe(), Middleware(CircuitBreakerMiddleware, breaker)) as c:
        for _ in range(2):
            assert (await c.get("/boom")).status_code == 500
        assert (await c.get("/")).status_code == 503
        clock.advance(30.0)
        assert (await c.get("/boom")).status_code == 500  # a failed probe reopens
        assert (await c.get("/")).status_code == 503


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_the_three_middlewares_together(kind: str) -> None:
    clock = FakeClock()
    limiter = RateLimiter(TokenBucket(3, 60.0), clock=clock)
    breaker = CircuitBreaker("upstream", consecutive_failures=2, open_duration=5.0, clock=clock)
    stack = [
        Middleware(RateLimitMiddleware, limiter),
        Middleware(BulkheadMiddleware, Bulkhead("app", max_concurrent=4)),
        Middleware(CircuitBreakerMiddleware, breaker),
    ]
    async with running(kind, Probe(), *stack) as c:
        statuses = [(await c.get(path)).status_code for path in ("/fail", "/fail", "/", "/")]
        assert statuses == [502, 502, 503, 429]
