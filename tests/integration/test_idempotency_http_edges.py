"""Idempotency-Key edge cases found by probing real servers with real clients.

aiohttp hands the middleware ``str`` headers (parsed as UTF-8) and a
``web.Response`` whose ``body`` is ``None`` when it has none; these tests
pin what a client sees in those cases: an empty response is replayed, and
a non-Latin-1 header (the key, the content type, or one the handler sets)
is a 400 or just works, never a 500 or a key stuck "in progress".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import httpx
from aiohttp import web

from resilience import MemoryIdempotencyStore
from resilience.aiohttp import idempotency_middleware
from tests.integration.servers import STARTUP_TIMEOUT
from tests.integration.test_idempotency_http import raw_post


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """aiohttp's own server on 127.0.0.1 with its production defaults."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    async with asyncio.timeout(STARTUP_TIMEOUT):
        await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def app_with(runs: list[str]) -> web.Application:
    async def no_content(request: web.Request) -> web.StreamResponse:
        runs.append(request.path)
        return web.Response(status=204)

    async def raised_no_content(request: web.Request) -> web.StreamResponse:
        runs.append(request.path)
        raise web.HTTPNoContent()

    async def created(request: web.Request) -> web.StreamResponse:
        runs.append(request.path)
        return web.json_response({"n": len(runs)}, status=201)

    async def named(request: web.Request) -> web.StreamResponse:
        runs.append(request.path)
        return web.Response(text="ok", headers={"X-Name": "caf\u00e9 \u20ac"})

    app = web.Application(middlewares=[idempotency_middleware(MemoryIdempotencyStore())])
    app.router.add_delete("/no-content", no_content)
    app.router.add_post("/no-content", no_content)
    app.router.add_post("/raised-no-content", raised_no_content)
    app.router.add_post("/created", created)
    app.router.add_post("/named", named)
    return app


async def test_aiohttp_replays_a_response_without_body() -> None:
    runs: list[str] = []
    async with serve(app_with(runs)) as url, httpx.AsyncClient(timeout=10) as client:
        for path in ("/no-content", "/raised-no-content"):
            first = await client.post(url + path, headers={"Idempotency-Key": path})
            again = await client.post(url + path, headers={"Idempotency-Key": path})
            assert first.status_code == again.status_code == 204, again.text
            assert again.content == b""
            assert again.headers["idempotent-replayed"] == "true"
    assert runs == ["/no-content", "/raised-no-content"]


async def test_aiohttp_non_latin1_key_is_400_and_content_type_is_fingerprinted() -> None:
    runs: list[str] = []
    async with serve(app_with(runs)) as url, httpx.AsyncClient(timeout=10) as client:
        euro_key = await client.post(
            url + "/created", headers=[(b"Idempotency-Key", "k\u20ac".encode())]
        )
        assert euro_key.status_code == 400, euro_key.text
        assert euro_key.headers["content-type"] == "application/problem+json"
        typed = [(b"Idempotency-Key", b"k2"), (b"Content-Type", "text/plain; x=\u20ac".encode())]
        first = await client.post(url + "/created", headers=typed, content=b"a")
        again = await client.post(url + "/created", headers=typed, content=b"a")
        other = [(b"Idempotency-Key", b"k2"), (b"Content-Type", "text/plain; x=\u00a3".encode())]
        reused = await client.post(url + "/created", headers=other, content=b"a")
        # bytes that are not UTF-8 at all (obs-text), as a raw client sends them
        raw_keys = [
            await raw_post(url, b"/created", b"Idempotency-Key: k\xe9"),
            await raw_post(url, b"/created", b"Idempotency-Key: k\xff\xfe"),
        ]
        raw_type = b"Idempotency-Key: k3\r\nContent-Type: t\xe9xt/plain"
        typed_raw = await raw_post(url, b"/created", raw_type)
    assert first.status_code == again.status_code == 201, first.text
    assert again.headers["idempotent-replayed"] == "true"
    assert reused.status_code == 422, reused.text
    assert raw_keys == [(400, b"application/problem+json")] * 2
    assert typed_raw[0] == 201
    assert runs == ["/created", "/created"]


async def test_aiohttp_replays_a_non_latin1_response_header_byte_for_byte() -> None:
    runs: list[str] = []
    async with (
        serve(app_with(runs)) as url,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
    ):
        answers = []
        for _ in range(3):
            async with session.post(url + "/named", headers={"Idempotency-Key": "n"}) as response:
                raw = dict((k.lower(), v) for k, v in response.raw_headers)
                answers.append((response.status, raw.get(b"x-name"), await response.read()))
    expected = (200, "caf\u00e9 \u20ac".encode(), b"ok")
    assert answers == [expected] * 3
    assert runs == ["/named"]
