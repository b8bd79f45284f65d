"""RateLimitMiddleware behind uvicorn, driven by httpx: Starlette and FastAPI, memory and Redis.

The limiter runs on a FakeClock, so every 429 is predictable: a twin
"oracle" limiter fed the same requests says which must be refused, and
time moves only when the test says so (which is how Retry-After is checked
for honesty: advance exactly that long, and the next request must pass).
"""

from __future__ import annotations

import asyncio
import json
import math
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
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from resilience import GCRA, LeakyBucket, RateLimiter, TokenBucket
from resilience.asgi import RateLimitMiddleware, Rule, client_ip, header
from resilience.testing import FakeClock
from tests.integration.servers import ratelimit_fields, serve_asgi

FRAMEWORKS = ["starlette", "fastapi"]


class Probe:
    """What the app saw: lifespan events, requests served, stream gates."""

    def __init__(self) -> None:
        self.lifespan: list[str] = []
        self.served = 0
        self.gates: list[asyncio.Event] = [asyncio.Event() for _ in range(3)]


def build_app(kind: str, probe: Probe, **middleware: Any) -> Any:
    """The same endpoints in Starlette or FastAPI, wrapped in RateLimitMiddleware."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        probe.lifespan.append("startup")
        yield
        probe.lifespan.append("shutdown")

    async def hello(request: Request) -> Response:
        probe.served += 1
        return PlainTextResponse("hello")

    async def login(request: Request) -> Response:
        probe.served += 1
        if request.headers.get("authorization") != "Bearer good":
            return JSONResponse({"error": "who are you?"}, status_code=401)
        return PlainTextResponse("welcome")

    async def stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for number, gate in enumerate(probe.gates):
                yield f"chunk-{number};".encode()
                async with asyncio.timeout(10):  # the client releases the next chunk
                    await gate.wait()

        return StreamingResponse(chunks(), media_type="text/plain")

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        message = await websocket.receive_text()
        await websocket.send_text(f"echo:{message}")
        await websocket.close()

    if kind == "starlette":
        return Starlette(
            routes=[
                Route("/", hello),
                Route("/login", login, methods=["POST"]),
                Route("/health", hello),
                Route("/stream", stream),
                WebSocketRoute("/ws", echo),
            ],
            middleware=[Middleware(RateLimitMiddleware, **middleware)],
            lifespan=lifespan,
        )
    app = FastAPI(lifespan=lifespan)
    app.add_api_route("/", hello)
    app.add_api_route("/login", login, methods=["POST"])
    app.add_api_route("/health", hello)
    app.add_api_route("/stream", stream)
    app.add_api_websocket_route("/ws", echo)
    app.add_middleware(RateLimitMiddleware, **middleware)
    return app


@asynccontextmanager
async def running(kind: str, probe: Probe, **middleware: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve_asgi(build_app(kind, probe, **middleware)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield client


def problem(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = json.loads(response.content)
    return body


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_429s_appear_exactly_when_the_limiter_says(kind: str) -> None:
    clock = FakeClock(1000.0)
    limiter = RateLimiter(GCRA(5, 10.0, burst=3), clock=clock, name="api")
    oracle = RateLimiter(GCRA(5, 10.0, burst=3), clock=clock, name="oracle")
    probe = Probe()
    async with running(kind, probe, limiter=limiter) as client:
        steps = [0, 0, 0, 0, 0.5, 0.5, 1.3, 0, 0, 2.0, 0, 0, 0]
        statuses = []
        for step in steps:
            clock.advance(step)
            expected = oracle.try_acquire("127.0.0.1")
            response = await client.get("/")
            statuses.append(response.status_code)
            assert response.status_code == (200 if expected.allowed else 429)
            policy, limit = ratelimit_fields(response.headers)
            assert policy == {"q": 3, "w": 6}  # burst 3 at once, refilled in 6 s
            if expected.allowed:
                assert response.text == "hello"
                assert limit == {"r": expected.remaining, "t": math.ceil(expected.reset_after)}
                assert "retry-after" not in response.headers
            else:
                wait = math.ceil(expected.retry_after)
                assert limit == {"r": 0, "t": wait}
                assert response.headers["retry-after"] == str(wait)
                body = problem(response)
                assert body["status"] == 429
                assert body["policy"] == "api"
                assert body["violated-policies"] == ["api"]
                assert body["type"].endswith("#quota-exceeded")
                assert body["title"] and body["detail"]
    assert 200 in statuses and 429 in statuses
    assert probe.served == statuses.count(200)


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_retry_after_is_honest(kind: str) -> None:
    clock = FakeClock(50.0)
    limiter = RateLimiter(GCRA(7, 10.0), clock=clock)  # 1.43 s per request: fractional waits
    async with running(kind, Probe(), limiter=limiter) as client:
        refused = 0
        for _ in range(40):
            response = await client.get("/")
            if response.status_code == 200:
                continue
            assert response.status_code == 429
            refused += 1
            wait = int(response.headers["retry-after"])
            assert wait >= 1
            clock.advance(wait)
            assert (await client.get("/")).status_code == 200
        assert refused >= 5


@pytest.mark.parametrize("kind", FRAMEWORKS)
@pytest.mark.parametrize("style", ["legacy", "both", None])
async def test_header_styles(kind: str, style: str | None) -> None:
    clock = FakeClock()
    limiter = RateLimiter(TokenBucket(2, 60.0), clock=clock, name="small")
    async with running(kind, Probe(), limiter=limiter, headers=style) as client:
        ok, _, refused = [await client.get("/") for _ in range(3)]
    assert (ok.status_code, refused.status_code) == (200, 429)
    assert refused.headers["retry-after"] == "30"
    legacy = style in ("legacy", "both")
    ietf = style == "both"
    for response, remaining, reset in ((ok, "1", "30"), (refused, "0", "30")):
        assert ("x-ratelimit-limit" in response.headers) is legacy
        assert ("ratelimit" in response.headers) is ietf
        if legacy:
            assert response.headers["x-ratelimit-limit"] == "2"
            assert response.headers["x-ratelimit-remaining"] == remaining
            assert response.headers["x-ratelimit-reset"] == reset
        if ietf:
            policy, limit = ratelimit_fields(response.headers)
            assert policy == {"q": 2, "w": 60}
            assert limit["r"] == int(remaining)


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_routes_rules_and_exempt(kind: str) -> None:
    clock = FakeClock()
    default = RateLimiter(TokenBucket(100, 60.0), clock=clock, name="default")
    login = RateLimiter(TokenBucket(2, 60.0), clock=clock, name="login")
    rules = [
        Rule("/health", exempt=True),
        Rule("/login", methods={"POST"}, limiter=login),
    ]
    async with running(kind, Probe(), limiter=default, rules=rules) as client:
        health = [await client.get("/health") for _ in range(3)]
        assert all(r.status_code == 200 and "ratelimit" not in r.headers for r in health)
        logins = [
            await client.post("/login", headers={"authorization": "Bearer good"}) for _ in range(3)
        ]
        assert [r.status_code for r in logins] == [200, 200, 429]
        assert problem(logins[2])["policy"] == "login"
        home = await client.get("/")
        assert home.status_code == 200
        assert ratelimit_fields(home.headers)[0] == {"q": 100, "w": 60}


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_401_and_403_can_be_left_uncounted(kind: str) -> None:
    clock = FakeClock()
    limiter = RateLimiter(TokenBucket(2, 60.0), clock=clock)
    async with running(kind, Probe(), limiter=limiter, refund_statuses={401, 403}) as client:
        for _ in range(5):
            assert (await client.post("/login")).status_code == 401
        good = [
            await client.post("/login", headers={"authorization": "Bearer good"}) for _ in range(3)
        ]
        assert [r.status_code for r in good] == [200, 200, 429]
        # At the limit, even a request that would get a 401 is refused (counted on arrival).
        assert (await client.post("/login")).status_code == 429


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_streamed_response_arrives_chunk_by_chunk(kind: str) -> None:
    probe = Probe()
    limiter = RateLimiter(TokenBucket(10, 60.0), clock=FakeClock())
    async with running(kind, probe, limiter=limiter) as client:
        async with client.stream("GET", "/stream") as response:
            assert response.status_code == 200
            assert "ratelimit" in response.headers
            received = b""
            chunks = response.aiter_raw()
            for number, gate in enumerate(probe.gates):
                async with asyncio.timeout(10):
                    while f"chunk-{number};".encode() not in received:
                        received += await anext(chunks)
                # The next chunk is not even produced until we open its gate: had the
                # middleware buffered the body, this chunk would never have arrived.
                gate.set()
    assert received == b"chunk-0;chunk-1;chunk-2;"


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_lifespan_and_websockets_pass_through(kind: str) -> None:
    probe = Probe()
    limiter = RateLimiter(TokenBucket(1, 3600.0), clock=FakeClock())
    async with running(kind, probe, limiter=limiter) as client:
        assert probe.lifespan == ["startup"]
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/")).status_code == 429  # the HTTP quota is spent...
        ws_url = str(client.base_url).replace("http://", "ws://") + "/ws"
        async with aiohttp.ClientSession() as session:
            for turn in range(3):  # ...and websockets are not limited at all
                async with session.ws_connect(
                    ws_url, timeout=aiohttp.ClientWSTimeout(ws_close=5)
                ) as ws:
                    await ws.send_str(f"hi{turn}")
                    message = await asyncio.wait_for(ws.receive_str(), 10)
                    assert message == f"echo:hi{turn}"
    assert probe.lifespan == ["startup", "shutdown"]


# -- keys over real connections ------------------------------------------------------------


async def _statuses(client: httpx.AsyncClient, headers_list: list[dict[str, str]]) -> list[int]:
    return [(await client.get("/", headers=headers)).status_code for headers in headers_list]


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(kind: str) -> None:
    limiter = RateLimiter(TokenBucket(2, 60.0), clock=FakeClock())
    spoofs = [
        {"x-forwarded-for": "198.51.100.1"},
        {"x-forwarded-for": "198.51.100.2"},
        {"forwarded": "for=198.51.100.3"},
        {"x-forwarded-for": "198.51.100.4, 10.0.0.1"},
    ]
    async with running(kind, Probe(), limiter=limiter, key=client_ip()) as client:
        assert await _statuses(client, spoofs) == [200, 200, 429, 429]
    trusted_elsewhere = client_ip(trusted_proxies=["10.0.0.0/8"])  # 127.0.0.1 is not a proxy
    limiter = RateLimiter(TokenBucket(2, 60.0), clock=FakeClock())
    async with running(kind, Probe(), limiter=limiter, key=trusted_elsewhere) as client:
        assert await _statuses(client, spoofs) == [200, 200, 429, 429]


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_trusted_proxy_chain_read_right_to_left(kind: str) -> None:
    limiter = RateLimiter(TokenBucket(2, 60.0), clock=FakeClock())
    key = client_ip(trusted_proxies=["127.0.0.1", "10.0.0.0/8"])
    async with running(kind, Probe(), limiter=limiter, key=key) as client:
        # The client 203.0.113.9 reached us through 10.0.0.7; what it wrote itself
        # (the leftmost entries) changes nothing.
        chain = [
            {"x-forwarded-for": "203.0.113.9, 10.0.0.7"},
            {"x-forwarded-for": "1.1.1.1, 203.0.113.9, 10.0.0.7"},
            {"x-forwarded-for": "2.2.2.2, 203.0.113.9,10.0.0.7"},
        ]
        assert await _statuses(client, chain) == [200, 200, 429]
        other = [{"forwarded": 'for=203.0.113.10;proto=https, for="10.0.0.7"'}] * 3
        assert await _statuses(client, other) == [200, 200, 429]


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_ipv6_rotation_within_a_64_shares_one_bucket(kind: str) -> None:
    limiter = RateLimiter(TokenBucket(3, 60.0), clock=FakeClock())
    key = client_ip(trusted_proxies=["127.0.0.1"])
    rotating = [
        {"x-forwarded-for": f"2001:db8:abcd:12::{n:x}"} for n in (1, 0xFFFF, 0xBEEF, 0x1234)
    ]
    async with running(kind, Probe(), limiter=limiter, key=key) as client:
        assert await _statuses(client, rotating) == [200, 200, 200, 429]
        neighbour = [{"x-forwarded-for": "[2001:db8:abcd:13::1]:4711"}]
        assert await _statuses(client, neighbour) == [200]


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_bad_forwarding_headers_never_cause_a_500(kind: str) -> None:
    limiter = RateLimiter(TokenBucket(1000, 60.0), clock=FakeClock())
    key = client_ip(trusted_proxies=["127.0.0.1"])
    huge = "9" * (64 * 1024)
    bad: list[Any] = [
        {"x-forwarded-for": huge},
        {"x-forwarded-for": ", ".join(["10.0.0.1"] * 8000)[: 64 * 1024]},
        {"forwarded": "for=" + '"' * (64 * 1024)},
        {"forwarded": ';;;,,,==\\""for'},
        {"x-forwarded-for": "[::1"},
        {"x-forwarded-for": "1.2.3.4:notaport"},
        [(b"x-forwarded-for", b"\xe9\xe9\xff, 10.0.0.1")],
        [("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "bogus"), ("forwarded", "for=x")],
        [("x-forwarded-for", "1.1.1.1")] * 50,
    ]
    async with running(kind, Probe(), limiter=limiter, key=key) as client:
        for headers in bad:
            response = await client.get("/", headers=headers)
            assert response.status_code == 200, headers


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_api_key_header_falls_back_to_the_client_address(kind: str) -> None:
    limiter = RateLimiter(TokenBucket(2, 60.0), clock=FakeClock())
    async with running(kind, Probe(), limiter=limiter, key=header("X-API-Key")) as client:
        assert await _statuses(client, [{"x-api-key": "alice"}] * 3) == [200, 200, 429]
        assert await _statuses(client, [{"x-api-key": "bob"}] * 2) == [200, 200]
        # No key, an absurd key, a repeated key: all count against the sender's address.
        anonymous: list[Any] = [
            {},
            {"x-api-key": "k" * 5000},
            [("x-api-key", "a"), ("x-api-key", "b")],
        ]
        assert await _statuses(client, anonymous) == [200, 200, 429]
        # A key equal to an address does not share that address's bucket.
        assert await _statuses(client, [{"x-api-key": "127.0.0.1"}]) == [200]


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_shaping_limiter_delays_instead_of_refusing(kind: str) -> None:
    clock = FakeClock()  # auto-advancing: the shaped wait moves fake time, not real time
    limiter = RateLimiter(LeakyBucket(1, 2.0, capacity=3, mode="shape"), clock=clock)
    async with running(kind, Probe(), limiter=limiter) as client:
        statuses = await _statuses(client, [{}] * 3)
    assert statuses == [200, 200, 200]
    assert sum(clock.sleeps) > 0


# -- the Redis store -------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_store_behind_the_middleware(redis_url: str) -> None:
    redis_asyncio = pytest.importorskip("redis.asyncio")
    from resilience.redis import RedisStore

    client = redis_asyncio.Redis.from_url(redis_url)
    store = RedisStore(client, clock="client")
    clock = FakeClock(10_000.0)
    limiter = RateLimiter(GCRA(3, 30.0), store=store, clock=clock, name="shared")
    oracle = RateLimiter(GCRA(3, 30.0), clock=clock)
    try:
        async with running("starlette", Probe(), limiter=limiter, refund_statuses={401}) as http:
            for step in [0, 0, 0, 0, 4.0, 6.0, 0, 10.0, 0]:
                clock.advance(step)
                expected = oracle.try_acquire("127.0.0.1")
                response = await http.get("/")
                assert response.status_code == (200 if expected.allowed else 429)
                _, limit = ratelimit_fields(response.headers)
                assert limit["r"] == (expected.remaining if expected.allowed else 0)
            clock.advance(60.0)
            for _ in range(5):  # refunded 401s: the Redis refund is scheduled, not awaited
                assert (await http.post("/login")).status_code == 401
                await asyncio.sleep(0.05)
            assert (await http.get("/")).status_code == 200
    finally:
        await client.aclose()


@pytest.mark.parametrize("kind", FRAMEWORKS)
async def test_unusable_key_or_cost_is_a_400_problem_not_a_500(kind: str) -> None:
    from resilience import MemoryStore

    tiny = RateLimiter(TokenBucket(5, 60.0), store=MemoryStore(max_key_length=8), clock=FakeClock())
    async with running(kind, Probe(), limiter=tiny, key=header("X-API-Key")) as client:
        response = await client.get("/", headers={"x-api-key": "k" * 100})
        assert response.status_code == 400
        assert problem(response)["status"] == 400
    costly = RateLimiter(TokenBucket(5, 60.0), clock=FakeClock())
    async with running(kind, Probe(), limiter=costly, cost=lambda scope: -1) as client:
        response = await client.get("/")
        assert response.status_code == 400
        assert "cost" in problem(response)["detail"]
