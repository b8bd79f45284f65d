"""Valet key over real servers: uvicorn (ValetKeyApp) and aiohttp (valet_key_handler)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from resilience import ClaimCheck, FileBlobStore, MemoryBlobStore
from resilience.aiohttp import valet_key_handler
from resilience.asgi import ValetKeyApp
from resilience.claimcheck.valet import parse_range
from resilience.events import EventBus
from resilience.testing import FakeClock
from tests.claimcheck_contract import SECRET
from tests.integration.servers import serve_aiohttp, serve_asgi

DATA = os.urandom(3 * 1024 * 1024 + 17)


@contextlib.asynccontextmanager
async def serve(kind: str, cc: ClaimCheck) -> AsyncIterator[str]:
    if kind == "asgi":
        async with serve_asgi(ValetKeyApp(cc)) as url:
            yield url
    else:
        app = web.Application()
        app.router.add_get("/{token}", valet_key_handler(cc))
        app.router.add_route("POST", "/{token}", valet_key_handler(cc))
        async with serve_aiohttp(app) as url:
            yield url


@pytest.fixture(params=["asgi", "aiohttp"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def cc(tmp_path: Path, clock: FakeClock) -> ClaimCheck:
    return ClaimCheck(
        FileBlobStore(tmp_path, chunk_size=64 * 1024), SECRET, ttl=3600.0, clock=clock,
        events=EventBus(),
    )  # fmt: skip


async def test_full_and_ranged_reads(kind: str, cc: ClaimCheck) -> None:
    env = cc.check_in(DATA)
    token = cc.grant(env, ttl=60)
    ticket = cc.ticket(env)
    assert ticket is not None
    size = len(DATA)
    async with serve(kind, cc) as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/{token}") as r:
            assert r.status == 200
            assert r.headers["ETag"] == f'"{ticket.digest}"'
            assert r.headers["Accept-Ranges"] == "bytes"
            assert int(r.headers["Content-Length"]) == size
            assert await r.read() == DATA
        cases = {
            "bytes=0-0": (0, 1),
            "bytes=100-1048675": (100, 1048676),
            f"bytes={size - 10}-": (size - 10, size),
            "bytes=-5": (size - 5, size),
            f"bytes=5-{size * 2}": (5, size),
        }
        for header, (start, end) in cases.items():
            async with http.get(f"{base}/{token}", headers={"Range": header}) as r:
                assert r.status == 206, header
                assert r.headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}"
                assert await r.read() == DATA[start:end], header
        for header in (f"bytes={size}-", "bytes=-0"):
            async with http.get(f"{base}/{token}", headers={"Range": header}) as r:
                assert r.status == 416
                assert r.headers["Content-Range"] == f"bytes */{size}"
                assert r.headers["Content-Type"] == "application/problem+json"
        for header in ("bytes=5-2", "items=0-1", "bytes=0-1,5-6"):  # ignored: the whole payload
            async with http.get(f"{base}/{token}", headers={"Range": header}) as r:
                assert r.status == 200 and len(await r.read()) == size
        stale = {"Range": "bytes=0-9", "If-Range": '"' + "0" * 64 + '"'}
        async with http.get(f"{base}/{token}", headers=stale) as r:
            assert r.status == 200
        fresh = {"Range": "bytes=0-9", "If-Range": f'"{ticket.digest}"'}
        async with http.get(f"{base}/{token}", headers=fresh) as r:
            assert r.status == 206 and await r.read() == DATA[:10]
        async with http.head(f"{base}/{token}") as r:
            assert r.status == 200 and int(r.headers["Content-Length"]) == size
        async with http.post(f"{base}/{token}") as r:
            assert r.status == 405


async def test_forged_expired_and_released(kind: str, cc: ClaimCheck, clock: FakeClock) -> None:
    env = cc.check_in(DATA)
    token = cc.grant(env, ttl=60)
    forger = ClaimCheck(MemoryBlobStore(), b"not the secret, but 32 bytes...!", clock=clock)
    forged = forger.grant(forger.check_in(DATA), ttl=60)
    kid, body, mac = token.split(".")
    altered = f"{kid}.{body}.{mac[::-1]}"
    async with serve(kind, cc) as base, aiohttp.ClientSession() as http:
        for bad in (forged, altered, "nonsense", env.ticket):  # a claim ticket is no valet key
            async with http.get(f"{base}/{bad}") as r:
                assert r.status == 403, bad
                assert r.headers["Content-Type"] == "application/problem+json"
                problem = json.loads(await r.read())
                assert problem["status"] == 403 and "not valid" in problem["detail"]
        clock.advance(60)
        async with http.get(f"{base}/{token}") as r:
            assert r.status == 403
            assert "expired" in json.loads(await r.read())["detail"]
        fresh = cc.grant(env, ttl=60)
        cc.release(env)
        async with http.get(f"{base}/{fresh}") as r:
            assert r.status == 404
            assert json.loads(await r.read())["status"] == 404


async def test_corrupt_payload_is_cut_off(kind: str, cc: ClaimCheck, tmp_path: Path) -> None:
    env = cc.check_in(DATA)
    ticket = cc.ticket(env)
    assert ticket is not None
    path = tmp_path / "blobs" / ticket.blob_id
    path.write_bytes(DATA[:-1] + bytes([DATA[-1] ^ 1]))
    token = cc.grant(env)
    async with serve(kind, cc) as base, aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with http.get(f"{base}/{token}") as r:
                assert r.status == 200
                await r.read()


def test_parse_range_edges() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-", 10) == (0, 10)
    assert parse_range("bytes=-20", 10) == (0, 10)
    assert parse_range("bytes=9-9", 10) == (9, 10)
    assert parse_range("bytes=" + "9" * 30 + "-", 10) is None
    assert parse_range("bytes=-", 10) is None


async def test_head_answers_like_get_for_a_released_payload(kind: str, cc: ClaimCheck) -> None:
    """HEAD is GET without the body (RFC 9110 9.3.2): 404 once the payload is gone."""
    env = cc.check_in(DATA)
    token = cc.grant(env, ttl=60)
    async with serve(kind, cc) as base, aiohttp.ClientSession() as http:
        async with http.head(f"{base}/{token}", headers={"Range": "bytes=0-9"}) as r:
            assert r.status == 206 and r.headers["Content-Range"] == f"bytes 0-9/{len(DATA)}"
        cc.release(env)
        for headers in ({}, {"Range": "bytes=0-9"}):
            async with http.get(f"{base}/{token}", headers=headers) as r:
                assert r.status == 404
            async with http.head(f"{base}/{token}", headers=headers) as r:
                assert r.status == 404, headers
                assert r.headers["Content-Type"] == "application/problem+json"


class _CountingFileStore(FileBlobStore):
    """A file store that counts the chunks its readers return and notes when one closes."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, chunk_size=64 * 1024, fsync=False)
        self.chunks_read = 0
        self.closed = asyncio.Event()
        self.gate = asyncio.Event()  # past 4 chunks, reads wait for it: the client is gone
        self.loop = asyncio.get_running_loop()

    def reader(self, blob_id: str, start: int = 0, end: int | None = None) -> Any:
        inner = super().reader(blob_id, start, end)
        store = self

        class Counting:
            def read_chunk(self) -> bytes:
                chunk = inner.read_chunk()
                store.chunks_read += 1
                return chunk

            async def aread_chunk(self) -> bytes:
                if store.chunks_read >= 4:
                    await store.gate.wait()
                return await asyncio.to_thread(self.read_chunk)

            def close(self) -> None:
                inner.close()
                store.loop.call_soon_threadsafe(store.closed.set)

        return Counting()


@contextlib.asynccontextmanager
async def serve_like_run_app(kind: str, cc: ClaimCheck) -> AsyncIterator[str]:
    """As ``serve``, but aiohttp with ``web.run_app``'s defaults (``TestServer`` cancels a
    handler whose client left, which production servers do not)."""
    if kind == "asgi":
        async with serve(kind, cc) as url:
            yield url
        return
    app = web.Application()
    app.router.add_get("/{token}", valet_key_handler(cc))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_client_gone_mid_download_stops_the_read(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that hangs up early in a 32 MiB download: the server stops reading the store,
    quietly (a cancelled download is no server error: no traceback, no 500 logged)."""
    caplog.set_level(logging.INFO)
    store = _CountingFileStore(tmp_path)
    cc = ClaimCheck(store, SECRET, events=EventBus())
    total_chunks = 512
    env = cc.check_in(iter([os.urandom(64 * 1024)] * total_chunks))
    token = cc.grant(env, ttl=60)
    async with serve_like_run_app(kind, cc) as base:
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /{token} HTTP/1.1\r\nHost: files\r\n\r\n".encode())
        await writer.drain()
        received = 0
        async with asyncio.timeout(30):
            while received < 128 * 1024:
                data = await reader.read(64 * 1024)
                assert data
                received += len(data)
        writer.transport.abort()  # the client is gone, while the server waits for a chunk
        await asyncio.sleep(0.1)  # (the server runs on this loop: it sees the reset now)
        store.gate.set()
        async with asyncio.timeout(30):
            await store.closed.wait()
    assert store.chunks_read < total_chunks // 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


async def test_if_none_match_gives_304(kind: str, cc: ClaimCheck) -> None:
    """RFC 9110 13.1.2: a GET or HEAD whose If-None-Match names the ETag gets 304, no body."""
    env = cc.check_in(DATA)
    token = cc.grant(env, ttl=60)
    ticket = cc.ticket(env)
    assert ticket is not None
    etag = f'"{ticket.digest}"'
    async with serve(kind, cc) as base, aiohttp.ClientSession() as http:
        for value in (etag, f"W/{etag}", "*", f'"other", {etag}'):
            ranged = {"If-None-Match": value, "Range": "bytes=0-9"}
            for headers in ({"If-None-Match": value}, ranged):
                async with http.get(f"{base}/{token}", headers=headers) as r:
                    assert r.status == 304, headers
                    assert r.headers["ETag"] == etag and await r.read() == b""
                async with http.head(f"{base}/{token}", headers=headers) as r:
                    assert r.status == 304, headers
        async with http.get(f"{base}/{token}", headers={"If-None-Match": '"other"'}) as r:
            assert r.status == 200 and await r.read() == DATA
        cc.release(env)
        async with http.get(f"{base}/{token}", headers={"If-None-Match": etag}) as r:
            assert r.status == 404  # preconditions only apply where GET would succeed
