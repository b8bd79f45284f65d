"""The aiohttp middlewares on a real aiohttp server, driven by the aiohttp client.

The same promises as the ASGI middleware: 429s exactly when the (FakeClock)
limiter says, parseable headers, an honest Retry-After, per-route rules,
refunds, trusted-proxy keys, bad headers never a 500, streaming untouched,
websockets and startup/cleanup hooks passing through; 503 from a full
bulkhead and from an open circuit.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Middleware

from resilience import GCRA, RateLimiter, TokenBucket
from resilience.aiohttp import (
    Rule,
    bulkhead_middleware,
    circuit_breaker_middleware,
    client_ip,
    header,
    key_from,
    rate_limit_headers_hook,
    rate_limit_middleware,
)
from resilience.breaker import CircuitBreaker, CircuitState
from resilience.bulkhead import Bulkhead
from resilience.testing import FakeClock
from tests.integration.servers import ratelimit_fields, serve_aiohttp


class Probe:
    def __init__(self) -> None:
        self.calls = 0
        self.inside = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.gates = [asyncio.Event() for _ in range(3)]
        self.log: list[str] = []


def build_app(probe: Probe, *middlewares: Middleware, hook: bool = False) -> web.Application:
    async def hello(request: web.Request) -> web.StreamResponse:
        probe.calls += 1
        return web.Response(text="hello")

    async def login(request: web.Request) -> web.StreamResponse:
        probe.calls += 1
        if request.headers.get("Authorization") == "Bearer good":
            return web.Response(text="welcome")
        if request.query.get("raise"):
            raise web.HTTPForbidden(text="no")
        return web.json_response({"error": "who are you?"}, status=401)

    async def fail(request: web.Request) -> web.StreamResponse:
        probe.calls += 1
        return web.Response(status=503, text="down")

    async def raise_502(request: web.Request) -> web.StreamResponse:
        probe.calls += 1
        raise web.HTTPBadGateway()

    async def boom(request: web.Request) -> web.StreamResponse:
        probe.calls += 1
        raise RuntimeError("boom")

    async def slow(request: web.Request) -> web.StreamResponse:
        probe.calls += 1
        probe.inside += 1
        if probe.inside >= 2:
            probe.entered.set()
        async with asyncio.timeout(10):
            await probe.release.wait()
        probe.inside -= 1
        return web.Response(text="slow")

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for number, gate in enumerate(probe.gates):
            await response.write(f"chunk-{number};".encode())
            async with asyncio.timeout(10):
                await gate.wait()
        await response.write_eof()
        return response

    async def echo(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        message = await ws.receive_str()
        await ws.send_str(f"echo:{message}")
        await ws.close()
        return ws

    async def context(app: web.Application) -> AsyncIterator[None]:
        probe.log.append("startup")
        yield
        probe.log.append("cleanup")

    app = web.Application(
        middlewares=list(middlewares),
        handler_args={"max_field_size": 128 * 1024},  # lets 64 KiB headers reach the app
    )
    app.cleanup_ctx.append(context)
    if hook:
        app.on_response_prepare.append(rate_limit_headers_hook)
    app.router.add_get("/", hello)
    app.router.add_get("/health", hello)
    app.router.add_post("/login", login)
    app.router.add_get("/fail", fail)
    app.router.add_get("/502", raise_502)
    app.router.add_get("/boom", boom)
    app.router.add_get("/slow", slow)
    app.router.add_get("/stream", stream)
    app.router.add_get("/ws", echo)
    return app


@asynccontextmanager
async def running(
    probe: Probe, *middlewares: Middleware, hook: bool = False
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with (
        serve_aiohttp(build_app(probe, *middlewares, hook=hook)) as url,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
    ):
        yield url, session


async def get(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any, bytes]:
    async with session.get(url, **kw) as response:
        return response.status, response.headers, await response.read()


async def post(session: aiohttp.ClientSession, url: str, **kw: Any) -> int:
    async with session.post(url, **kw) as response:
        await response.read()
        return response.status


def problem(headers: Any, body: bytes) -> dict[str, Any]:
    assert headers["Content-Type"] == "application/problem+json"
    document: dict[str, Any] = json.loads(body)
    return document


async def test_429s_appear_exactly_when_the_limiter_says() -> None:
    clock = FakeClock(1000.0)
    limiter = RateLimiter(GCRA(5, 10.0, burst=3), clock=clock, name="api")
    oracle = RateLimiter(GCRA(5, 10.0, burst=3), clock=clock)
    probe = Probe()
    async with running(probe, rate_limit_middleware(limiter)) as (url, session):
        assert probe.log == ["startup"]
        statuses = []
        for step in [0, 0, 0, 0, 0.5, 0.5, 1.3, 0, 0, 2.0, 0, 0]:
            clock.advance(step)
            expected = oracle.try_acquire("127.0.0.1")
            status, headers, body = await get(session, url + "/")
            statuses.append(status)
            assert status == (200 if expected.allowed else 429)
            policy, limit = ratelimit_fields(headers)
            assert policy == {"q": 3, "w": 6}  # burst 3 at once, refilled in 6 s
            if expected.allowed:
                assert limit == {"r": expected.remaining, "t": math.ceil(expected.reset_after)}
            else:
                wait = math.ceil(expected.retry_after)
                assert limit == {"r": 0, "t": wait}
                assert headers["Retry-After"] == str(wait)
                document = problem(headers, body)
                assert (document["status"], document["policy"]) == (429, "api")
                assert document["type"].endswith("#quota-exceeded")
        assert 429 in statuses
        assert probe.calls == statuses.count(200)
    assert probe.log == ["startup", "cleanup"]


async def test_retry_after_is_honest() -> None:
    clock = FakeClock(50.0)
    limiter = RateLimiter(GCRA(7, 10.0), clock=clock)
    async with running(Probe(), rate_limit_middleware(limiter, headers="legacy")) as (url, s):
        refused = 0
        for _ in range(30):
            status, headers, _ = await get(s, url + "/")
            assert "X-RateLimit-Remaining" in headers and "RateLimit" not in headers
            if status == 429:
                refused += 1
                clock.advance(int(headers["Retry-After"]))
                assert (await get(s, url + "/"))[0] == 200
        assert refused >= 5


async def test_rules_exempt_and_refunds() -> None:
    clock = FakeClock()
    default = RateLimiter(TokenBucket(100, 60.0), clock=clock, name="default")
    login = RateLimiter(TokenBucket(2, 60.0), clock=clock, name="login")
    middleware = rate_limit_middleware(
        default,
        rules=[Rule("/health", exempt=True), Rule("/login", methods={"POST"}, limiter=login)],
        refund_statuses={401, 403},
    )
    async with running(Probe(), middleware) as (url, s):
        for _ in range(3):
            status, headers, _ = await get(s, url + "/health")
            assert status == 200 and "RateLimit" not in headers
        for _ in range(4):  # refunded: a returned 401 and a raised 403
            assert await post(s, url + "/login") == 401
            assert await post(s, url + "/login?raise=1") == 403
        good = {"Authorization": "Bearer good"}
        assert [await post(s, url + "/login", headers=good) for _ in range(3)] == [200, 200, 429]
        status, headers, _ = await get(s, url + "/")
        assert status == 200 and ratelimit_fields(headers)[0] == {"q": 100, "w": 60}


@pytest.mark.parametrize("hook", [True, False])
async def test_streamed_response_arrives_chunk_by_chunk(hook: bool) -> None:
    probe = Probe()
    limiter = RateLimiter(TokenBucket(10, 60.0), clock=FakeClock())
    async with (
        running(probe, rate_limit_middleware(limiter), hook=hook) as (url, s),
        s.get(url + "/stream") as response,
    ):
        assert response.status == 200
        # With the hook the headers reach streamed responses too; without it they cannot.
        assert ("RateLimit" in response.headers) is hook
        received = b""
        for number, gate in enumerate(probe.gates):
            async with asyncio.timeout(10):
                while f"chunk-{number};".encode() not in received:
                    received += await response.content.readany()
            gate.set()
        received += await response.read()
    assert received == b"chunk-0;chunk-1;chunk-2;"


async def test_websocket_handshakes_are_requests_unless_exempted() -> None:
    """A client header cannot buy a way around the middleware: aiohttp has no websocket
    scope, so a handshake is limited like any request; long-lived routes are exempted."""
    limiter = RateLimiter(TokenBucket(1, 3600.0), clock=FakeClock())
    async with running(Probe(), rate_limit_middleware(limiter)) as (url, s):
        upgrade = {"Upgrade": "websocket", "Connection": "Upgrade"}
        assert [(await get(s, url + "/", headers=upgrade))[0] for _ in range(3)] == [200, 429, 429]
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await s.ws_connect(url + "/ws")

    def websocket_route(request: web.Request) -> bool:
        return request.path == "/ws"

    limiter = RateLimiter(TokenBucket(1, 3600.0), clock=FakeClock())
    stack = [
        rate_limit_middleware(limiter, exempt=websocket_route),
        bulkhead_middleware(Bulkhead("b", max_concurrent=1), exempt=websocket_route),
        circuit_breaker_middleware(
            CircuitBreaker("c", consecutive_failures=1), exempt=websocket_route
        ),
    ]
    async with running(Probe(), *stack) as (url, s):
        assert [(await get(s, url + "/"))[0] for _ in range(2)] == [200, 429]
        for turn in range(3):
            async with s.ws_connect(url + "/ws") as ws:
                await ws.send_str(f"hi{turn}")
                assert await asyncio.wait_for(ws.receive_str(), 10) == f"echo:hi{turn}"


async def _statuses(s: aiohttp.ClientSession, url: str, headers_list: list[Any]) -> list[int]:
    return [(await get(s, url + "/", headers=h))[0] for h in headers_list]


async def test_keys_spoofing_proxies_ipv6_and_bad_headers() -> None:
    spoofs = [{"X-Forwarded-For": f"198.51.100.{n}"} for n in range(3)]
    limiter = RateLimiter(TokenBucket(2, 60.0), clock=FakeClock())
    async with running(Probe(), rate_limit_middleware(limiter)) as (url, s):
        assert await _statuses(s, url, spoofs) == [200, 200, 429]

    limiter = RateLimiter(TokenBucket(2, 60.0), clock=FakeClock())
    key = client_ip(trusted_proxies=["127.0.0.0/8", "10.0.0.0/8"])
    async with running(Probe(), rate_limit_middleware(limiter, key=key)) as (url, s):
        chain = [{"X-Forwarded-For": f"{n}.0.0.1, 203.0.113.9, 10.1.1.1"} for n in (1, 2, 3)]
        assert await _statuses(s, url, chain) == [200, 200, 429]
        rotating = [{"Forwarded": f'for="[2001:db8:5:6::{n}]:80"'} for n in (1, 2, 3)]
        assert await _statuses(s, url, rotating) == [200, 200, 429]
        huge = "1" * (64 * 1024)
        bad = [
            {"X-Forwarded-For": huge},
            {"Forwarded": "for=" + '"' * 60_000},
            [("X-Forwarded-For", "7.7.7.7"), ("X-Forwarded-For", "garbage")],
            [("X-Forwarded-For", "8.8.8.8")] * 40,
        ]
        for headers in bad:
            assert (await get(s, url + "/", headers=headers))[0] in (200, 429)


async def test_header_and_callable_keys() -> None:
    limiter = RateLimiter(TokenBucket(1, 60.0), clock=FakeClock())
    async with running(Probe(), rate_limit_middleware(limiter, key=header("X-API-Key"))) as (u, s):
        assert await _statuses(s, u, [{"X-API-Key": "a"}, {"X-API-Key": "a"}]) == [200, 429]
        assert await _statuses(s, u, [{"X-API-Key": "b"}, {}, {"X-API-Key": ""}]) == [200, 200, 429]

    def user(request: web.Request) -> str | None:
        return request.query.get("user")

    limiter = RateLimiter(TokenBucket(1, 60.0), clock=FakeClock())
    async with running(Probe(), rate_limit_middleware(limiter, key=key_from(user))) as (u, s):
        statuses = [(await get(s, u + path))[0] for path in ("/?user=1", "/?user=1", "/?user=2")]
        assert statuses == [200, 429, 200]
        assert [(await get(s, u + "/"))[0] for _ in range(2)] == [200, 429]  # by address


async def test_full_bulkhead_sheds_load_with_503() -> None:
    probe = Probe()
    bulkhead = Bulkhead("db", max_concurrent=2)
    async with running(probe, bulkhead_middleware(bulkhead, retry_after=2)) as (url, s):
        slow = [asyncio.create_task(get(s, url + "/slow")) for _ in range(2)]
        async with asyncio.timeout(10):
            await probe.entered.wait()
        status, headers, body = await get(s, url + "/")
        assert (status, headers["Retry-After"]) == (503, "2")
        assert problem(headers, body)["policy"] == "db"
        probe.release.set()
        assert [r[0] for r in await asyncio.gather(*slow)] == [200, 200]
        assert (await get(s, url + "/"))[0] == 200


async def test_open_circuit_fails_fast_then_recovers() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("upstream", consecutive_failures=3, open_duration=10.0, clock=clock)
    probe = Probe()
    async with running(probe, circuit_breaker_middleware(breaker)) as (url, s):
        assert [(await get(s, url + p))[0] for p in ("/fail", "/502", "/boom")] == [503, 502, 500]
        assert breaker.state == CircuitState.OPEN
        calls = probe.calls
        status, headers, body = await get(s, url + "/")
        assert (status, headers["Retry-After"]) == (503, "10")
        assert problem(headers, body)["policy"] == "upstream"
        assert probe.calls == calls
        clock.advance(10.0)
        assert (await get(s, url + "/"))[0] == 200
        assert breaker.snapshot().state == CircuitState.CLOSED


async def test_unusable_key_or_cost_is_a_400_problem_not_a_500() -> None:
    from resilience import MemoryStore, TokenBucket
    from resilience.aiohttp import header

    tiny = RateLimiter(TokenBucket(5, 60.0), store=MemoryStore(max_key_length=8), clock=FakeClock())
    middleware = rate_limit_middleware(tiny, key=header("X-API-Key"))
    async with running(Probe(), middleware) as (url, session):
        status, headers, body = await get(session, url + "/", headers={"X-API-Key": "k" * 100})
        assert status == 400
        assert problem(headers, body)["status"] == 400
    costly = RateLimiter(TokenBucket(5, 60.0), clock=FakeClock())
    async with running(Probe(), rate_limit_middleware(costly, cost=lambda request: -1)) as (
        url,
        session,
    ):
        status, headers, body = await get(session, url + "/")
        assert status == 400
        assert "cost" in problem(headers, body)["detail"]
