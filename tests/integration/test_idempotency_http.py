"""Idempotency-Key middleware on real servers (uvicorn and aiohttp) with real httpx clients.

Every test runs against both adapters: one app with the same routes written
as raw ASGI and as aiohttp handlers, a counter of how often each handler
really ran, and gates to hold a request in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web

from resilience import MemoryIdempotencyStore
from resilience.aiohttp import idempotency_middleware
from resilience.asgi import IdempotencyMiddleware
from resilience.events import EventBus
from resilience.redis import RedisIdempotencyStore
from resilience.redis.testing import RedisServer
from tests.integration.servers import STARTUP_TIMEOUT, serve_asgi

MAX_BODY = 4096


@dataclass
class Probe:
    runs: dict[str, int] = field(default_factory=dict)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    left: asyncio.Event = field(default_factory=asyncio.Event)

    def count(self, route: str) -> int:
        self.runs[route] = self.runs.get(route, 0) + 1
        return self.runs[route]


def outcome(probe: Probe, route: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """What every route answers (shared by both apps); may raise for /raise."""
    n = probe.count(route)
    headers = {"content-type": "application/json", "x-order": f"o-{n}", "set-cookie": "s=1"}
    if route == "/fail" and n == 1:
        return 500, headers, b'{"error":"boom"}'
    if route == "/raise" and n == 1:
        raise RuntimeError("handler crashed")
    if route == "/big":
        return 200, headers, b"x" * (MAX_BODY + 1)
    if route == "/conflict":
        return 409, headers, b"{}"
    document = {"route": route, "n": n, "echo": body.decode("utf-8", "replace")}
    return 201, headers, json.dumps(document).encode()


def asgi_app(probe: Probe) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        route = scope["path"]
        if route in ("/slow", "/hang"):
            probe.entered.set()
            if route == "/hang":  # stop when the client goes away: no response at all
                probe.count(route)
                while (await receive())["type"] != "http.disconnect":
                    pass
                probe.left.set()
                return
            await probe.gate.wait()
        status, headers, payload = outcome(probe, route, body)
        raw = [(k.encode(), v.encode()) for k, v in headers.items()]
        raw.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        if route == "/stream":  # two chunks: stored only once complete
            await send({"type": "http.response.body", "body": payload[:5], "more_body": True})
            await send({"type": "http.response.body", "body": payload[5:], "more_body": False})
        else:
            await send({"type": "http.response.body", "body": payload})

    return app


def aiohttp_app(probe: Probe, middleware: Any) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        route = request.path
        if route in ("/slow", "/hang"):
            probe.entered.set()
            if route == "/hang":  # cancelled when the client goes away (handler_cancellation)
                probe.count(route)
                try:
                    await asyncio.sleep(30)
                finally:
                    probe.left.set()
            await probe.gate.wait()
        status, headers, payload = outcome(probe, route, body)
        content_type = headers.pop("content-type")
        response = web.Response(status=status, body=payload, content_type=content_type)
        for name, value in headers.items():
            response.headers[name] = value
        return response

    app = web.Application(middlewares=[middleware])
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextlib.asynccontextmanager
async def serve_aiohttp(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    async with asyncio.timeout(STARTUP_TIMEOUT):
        await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


Serve = Callable[..., contextlib.AbstractAsyncContextManager[tuple[str, Probe]]]


@pytest.fixture(params=["asgi", "aiohttp"])
def serve(request: pytest.FixtureRequest) -> Serve:
    kind = request.param

    @contextlib.asynccontextmanager
    async def start(**options: Any) -> AsyncIterator[tuple[str, Probe]]:
        probe = Probe()
        options.setdefault("max_body", MAX_BODY)
        options.setdefault("store", MemoryIdempotencyStore())
        options.setdefault("events", EventBus())
        if kind == "asgi":
            app = IdempotencyMiddleware(asgi_app(probe), **options)
            async with serve_asgi(app) as url:
                yield url, probe
        else:
            async with serve_aiohttp(aiohttp_app(probe, idempotency_middleware(**options))) as url:
                yield url, probe

    return start


async def raw_post(url: str, path: bytes, header: bytes) -> tuple[int, bytes]:
    """A POST with a header value no well-behaved client library would send; (status, type)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: %s\r\n%s\r\nContent-Length: 1\r\n"
            b"Connection: close\r\n\r\na" % (path, host.encode(), header)
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()
    lines = head.split(b"\r\n")
    fields = dict(line.split(b": ", 1) for line in lines[1:] if b": " in line)
    fields = {k.lower(): v for k, v in fields.items()}
    return int(lines[0].split()[1]), fields.get(b"content-type", b"")


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def is_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


async def test_replay_is_byte_for_byte_and_the_handler_runs_once(serve: Serve) -> None:
    async with serve(store=MemoryIdempotencyStore()) as (url, probe), httpx.AsyncClient() as client:
        first = await client.post(f"{url}/charge?x=1", content=b'{"amount":5}', headers=key("k1"))
        second = await client.post(f"{url}/charge?x=1", content=b'{"amount":5}', headers=key("k1"))
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    for name in ("content-type", "x-order", "content-length"):
        assert first.headers[name] == second.headers[name]
    assert "set-cookie" in first.headers and "set-cookie" not in second.headers
    assert probe.runs == {"/charge": 1}


async def test_streamed_response_is_stored_once_complete(serve: Serve) -> None:
    async with serve() as (url, probe), httpx.AsyncClient() as client:
        first = await client.post(f"{url}/stream", content=b"abcdefgh", headers=key("s1"))
        second = await client.post(f"{url}/stream", content=b"abcdefgh", headers=key("s1"))
    assert first.content == second.content and probe.runs == {"/stream": 1}


async def test_reused_key_with_another_request_is_422(serve: Serve) -> None:
    async with serve() as (url, probe), httpx.AsyncClient() as client:
        await client.post(f"{url}/charge", content=b"a", headers=key("k1"))
        is_problem(await client.post(f"{url}/charge", content=b"b", headers=key("k1")), 422)
        is_problem(await client.post(f"{url}/charge?q=2", content=b"a", headers=key("k1")), 422)
        other_type = {**key("k1"), "Content-Type": "text/plain"}
        is_problem(await client.post(f"{url}/charge", content=b"a", headers=other_type), 422)
        # another path is another record, not a reuse
        assert (
            await client.post(f"{url}/other", content=b"a", headers=key("k1"))
        ).status_code == 201
    assert probe.runs == {"/charge": 1, "/other": 1}


async def test_in_progress_is_409_with_retry_after(serve: Serve) -> None:
    async with serve(lease=7.0) as (url, probe), httpx.AsyncClient() as client:
        first = asyncio.create_task(client.post(f"{url}/slow", content=b"x", headers=key("k")))
        await asyncio.wait_for(probe.entered.wait(), 10)
        duplicate = await client.post(f"{url}/slow", content=b"x", headers=key("k"))
        is_problem(duplicate, 409)
        assert 1 <= int(duplicate.headers["retry-after"]) <= 7
        probe.gate.set()
        assert (await first).status_code == 201
        replay = await client.post(f"{url}/slow", content=b"x", headers=key("k"))
        assert replay.headers["idempotent-replayed"] == "true"
    assert probe.runs == {"/slow": 1}


async def test_bad_keys_are_400(serve: Serve) -> None:
    async with serve(required=True) as (url, probe), httpx.AsyncClient() as client:
        is_problem(await client.post(f"{url}/charge", content=b"a"), 400)
        for bad in [b"", b"  ", b'""', b"x" * 256, "clé".encode(), b"a\x7fb", b"a\tb"]:
            status, content_type = await raw_post(url, b"/charge", b"Idempotency-Key: " + bad)
            assert status == 400, bad
            if bad != b"a\x7fb":  # aiohttp's own parser refuses a DEL in a header first
                assert content_type == b"application/problem+json", bad
        twice = [(b"Idempotency-Key", b"a"), (b"Idempotency-Key", b"b")]
        is_problem(await client.post(f"{url}/charge", content=b"a", headers=twice), 400)
        ok = await client.post(f"{url}/charge", content=b"a", headers=key('"quoted-key"'))
        assert ok.status_code == 201
        assert (
            await client.post(f"{url}/charge", content=b"a", headers=key("x" * 255))
        ).status_code == 201
        assert (await client.get(f"{url}/charge")).status_code == 201  # GET: not checked
    assert probe.runs == {"/charge": 3}


async def test_body_over_max_body_is_413(serve: Serve) -> None:
    async with serve() as (url, probe), httpx.AsyncClient() as client:
        is_problem(
            await client.post(f"{url}/charge", content=b"x" * (MAX_BODY + 1), headers=key("k")), 413
        )

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
            for _ in range(5):
                yield b"x" * 1000

        is_problem(await client.post(f"{url}/charge", content=chunks(), headers=key("k")), 413)
        assert (
            await client.post(f"{url}/charge", content=b"x" * MAX_BODY, headers=key("k"))
        ).status_code == 201
    assert probe.runs == {"/charge": 1}


async def test_large_response_is_not_rerun_on_retry(serve: Serve) -> None:
    async with serve() as (url, probe), httpx.AsyncClient() as client:
        first = await client.post(f"{url}/big", content=b"a", headers=key("k"))
        assert first.status_code == 200 and len(first.content) == MAX_BODY + 1
        retry = await client.post(f"{url}/big", content=b"a", headers=key("k"))
        is_problem(retry, 409)
        assert retry.json()["original-status"] == 200 and "retry-after" not in retry.headers
    assert probe.runs == {"/big": 1}


async def test_twenty_concurrent_duplicates_run_the_handler_once(serve: Serve) -> None:
    async with serve(wait=10.0) as (url, probe), httpx.AsyncClient() as client:

        async def one() -> httpx.Response:
            return await client.post(f"{url}/slow", content=b"x", headers=key("k"))

        tasks = [asyncio.create_task(one()) for _ in range(20)]
        await asyncio.wait_for(probe.entered.wait(), 10)
        await asyncio.sleep(0.1)
        probe.gate.set()
        responses = await asyncio.gather(*tasks)
    assert probe.runs == {"/slow": 1}
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 19


async def test_twenty_concurrent_duplicates_without_wait_get_409(serve: Serve) -> None:
    async with serve() as (url, probe), httpx.AsyncClient() as client:

        async def one() -> httpx.Response:
            return await client.post(f"{url}/slow", content=b"x", headers=key("k"))

        tasks = [asyncio.create_task(one()) for _ in range(20)]
        await asyncio.wait_for(probe.entered.wait(), 10)
        pending: Any = tasks
        async with asyncio.timeout(30):  # every duplicate is answered while the first runs
            while len(pending) > 1:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        probe.gate.set()
        responses = await asyncio.gather(*tasks)
    assert probe.runs == {"/slow": 1}
    assert sorted(r.status_code for r in responses) == [201] + [409] * 19


async def test_records_are_per_principal(serve: Serve) -> None:
    def who(request: Any) -> str | None:
        headers = request["headers"] if isinstance(request, dict) else None
        if headers is not None:
            return dict(headers).get(b"authorization", b"").decode() or None
        return str(request.headers.get("Authorization")) or None

    async with serve(principal=who) as (url, probe), httpx.AsyncClient() as client:
        alice = {**key("k"), "Authorization": "alice"}
        bob = {**key("k"), "Authorization": "bob"}
        a1 = await client.post(f"{url}/charge", content=b"same", headers=alice)
        b1 = await client.post(f"{url}/charge", content=b"same", headers=bob)
        a2 = await client.post(f"{url}/charge", content=b"same", headers=alice)
        b2 = await client.post(f"{url}/charge", content=b"same", headers=bob)
    assert probe.runs == {"/charge": 2}
    assert a1.content == a2.content and b1.content == b2.content and a1.content != b1.content


async def test_5xx_and_exceptions_release_the_key(serve: Serve) -> None:
    async with serve() as (url, probe), httpx.AsyncClient() as client:
        assert (await client.post(f"{url}/fail", content=b"a", headers=key("k"))).status_code == 500
        assert (await client.post(f"{url}/fail", content=b"a", headers=key("k"))).status_code == 201
        assert (
            await client.post(f"{url}/raise", content=b"a", headers=key("k"))
        ).status_code == 500
        assert (
            await client.post(f"{url}/raise", content=b"a", headers=key("k"))
        ).status_code == 201
        assert (
            await client.post(f"{url}/conflict", content=b"a", headers=key("k"))
        ).status_code == 409
        assert (
            await client.post(f"{url}/conflict", content=b"a", headers=key("k"))
        ).status_code == 409
        replay = await client.post(f"{url}/fail", content=b"a", headers=key("k"))
        assert replay.headers["idempotent-replayed"] == "true"
    assert probe.runs == {"/fail": 2, "/raise": 2, "/conflict": 2}


async def test_client_disconnect_releases_the_key(serve: Serve) -> None:
    async with serve() as (url, probe):
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.TimeoutException):
                await client.post(f"{url}/hang", content=b"a", headers=key("k"), timeout=0.5)
        await asyncio.wait_for(probe.left.wait(), 10)
        await asyncio.sleep(0.05)  # the middleware releases right after the handler ends
        probe.entered.clear()
        probe.left.clear()
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.TimeoutException):
                await client.post(f"{url}/hang", content=b"a", headers=key("k"), timeout=0.5)
        await asyncio.wait_for(probe.left.wait(), 10)
    assert probe.runs == {"/hang": 2}  # ran again: not 409, not a replay


async def test_options_are_validated() -> None:
    app = asgi_app(Probe())
    for options, name in [
        ({"methods": "POST"}, "methods"),
        ({"header": ""}, "header"),
        ({"max_body": -1}, "max_body"),
        ({"ttl": 0}, "ttl"),
        ({"principal": "user"}, "principal"),
        ({"required": "yes"}, "required"),
    ]:
        with pytest.raises(ValueError, match=name):
            IdempotencyMiddleware(app, **options)
        with pytest.raises(ValueError, match=name):
            idempotency_middleware(**options)


@pytest.mark.redis
@pytest.mark.filterwarnings("ignore:RedisStore.timeout=.*cannot bound:RuntimeWarning")
async def test_redis_outage_is_503_and_runs_nothing(
    serve: Serve, fresh_redis_server: RedisServer
) -> None:
    store = RedisIdempotencyStore.from_url(fresh_redis_server.url, timeout=0.5, events=EventBus())
    async with serve(store=store) as (url, probe), httpx.AsyncClient() as client:
        ok = await client.post(f"{url}/charge", content=b"a", headers=key("before"))
        assert ok.status_code == 201
        replay = await client.post(f"{url}/charge", content=b"a", headers=key("before"))
        assert replay.headers["idempotent-replayed"] == "true"
        fresh_redis_server.kill()
        try:
            refused = await client.post(f"{url}/charge", content=b"a", headers=key("during"))
            is_problem(refused, 503)
            assert refused.headers["retry-after"] == "1"
            assert probe.runs == {"/charge": 1}  # nothing ran unrecorded
        finally:
            fresh_redis_server.start()
        again = await client.post(f"{url}/charge", content=b"a", headers=key("during"))
        assert again.status_code == 201
        assert (
            await client.post(f"{url}/charge", content=b"a", headers=key("during"))
        ).content == again.content
    assert probe.runs == {"/charge": 2}
    await store.aclose()


async def test_aiohttp_client_sees_the_same_replay(serve: Serve) -> None:
    async with serve() as (url, probe), aiohttp.ClientSession() as session:
        bodies = []
        for _ in range(2):
            async with session.post(f"{url}/charge", data=b"z", headers=key("k")) as response:
                bodies.append(
                    (
                        response.status,
                        await response.read(),
                        response.headers.get("Idempotent-Replayed"),
                    )
                )
    assert (
        bodies[0][:2] == bodies[1][:2] and bodies[1][2] == "true" and probe.runs == {"/charge": 1}
    )


async def test_a_store_full_of_leases_is_503_not_500(serve: Serve) -> None:
    async with serve(store=MemoryIdempotencyStore(max_keys=1)) as (url, probe):
        async with httpx.AsyncClient() as client:
            first = asyncio.create_task(client.post(f"{url}/slow", content=b"x", headers=key("a")))
            await asyncio.wait_for(probe.entered.wait(), 10)
            is_problem(await client.post(f"{url}/charge", content=b"x", headers=key("b")), 503)
            probe.gate.set()
            assert (await first).status_code == 201
            ok = await client.post(f"{url}/charge", content=b"x", headers=key("b"))
            assert ok.status_code == 201  # the completed record made room
    assert probe.runs == {"/slow": 1, "/charge": 1}
