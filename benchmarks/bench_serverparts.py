"""Where a rate-limited request's microseconds go inside a real server, without sockets.

``bench_http`` measures whole servers under ``wrk``; on a shared machine its
CPU figures move by a microsecond or two between runs, too much to split a
few microseconds into parts.  Here the servers' own protocol objects (uvicorn's
``HttpToolsProtocol``, aiohttp's ``RequestHandler``) are fed raw HTTP/1.1
requests through an in-memory transport in one process, so every request
runs the server's real parsing, ASGI/aiohttp plumbing and header encoding,
with the same code around it as in production (and the same cache pressure,
which makes each Python line cost two to three times what a tight
``timeit`` loop says), but no socket calls and no load generator.

Each row is one app; the middleware variants that take only part of the
rate limiter's work (the decision alone, two constant header lines) show
what each part costs.  Rounds are interleaved; the table gives the median
process CPU time per request and the difference to the bare app.

Run: ``python -m benchmarks serverparts``.  Needs uvicorn, httptools and aiohttp.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks import bench_http

Row = dict[str, Any]

ROUNDS = int(os.environ.get("BENCH_PARTS_ROUNDS", "7"))
REQUESTS = int(os.environ.get("BENCH_PARTS_REQUESTS", "3000"))
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: bench\r\n\r\n"


class _Transport(asyncio.Transport):
    """Counts writes (sets ``written`` once ``target`` is reached); a fixed IPv4 peer."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.target = 0
        self.written = asyncio.Event()
        self.closing = False

    def _wrote(self) -> None:
        self.writes += 1
        if self.writes >= self.target:
            self.written.set()

    async def wait_for(self, writes: int) -> None:
        self.target = self.writes + writes
        self.written.clear()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {
            "sockname": ("127.0.0.1", 8000),
            "peername": ("127.0.0.1", 40000),
        }.get(name, default)

    def write(self, data: Any) -> None:
        self._wrote()

    def writelines(self, data: Any) -> None:
        self._wrote()

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


# -- the partial middlewares ----------------------------------------------------------


def _asgi_decision_only() -> Any:
    """The limiter's decision and nothing else (no key extraction, no headers)."""
    decide = bench_http._limiter(True).try_acquire
    app = bench_http._raw_app

    async def decision_only(scope: Any, receive: Any, send: Any) -> None:
        decide("127.0.0.1", 1)
        await app(scope, receive, send)

    return decision_only


def _aiohttp_decision_only() -> Any:
    from aiohttp import web

    decide = bench_http._limiter(True).try_acquire

    @web.middleware
    async def decision_only(request: web.Request, handler: Any) -> web.StreamResponse:
        decide("127.0.0.1", 1)
        return await handler(request)  # type: ignore[no-any-return]

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[decision_only])
    app.router.add_get("/", ok)
    return app


VARIANTS = ["bare", "trivial", "trivial-headers", "decision-only", "ours-none", "ours-ietf"]
LABELS = {
    **bench_http.LABELS,
    "decision-only": "middleware taking the limiter's decision only",
}


async def _uvicorn_one(variant: str) -> Callable[[], Awaitable[None]]:
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    app = _asgi_decision_only() if variant == "decision-only" else bench_http.asgi_app(variant)
    config = Config(app=app, http="httptools", lifespan="off", access_log=False)
    config.load()
    protocol = HttpToolsProtocol(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = _Transport()
    protocol.connection_made(transport)

    async def one() -> None:
        await transport.wait_for(2)  # uvicorn writes the head, then the body
        protocol.data_received(REQUEST)
        await transport.written.wait()
        await asyncio.sleep(0)  # the request task finishes

    return one


async def _aiohttp_one(variant: str) -> Callable[[], Awaitable[None]]:
    from aiohttp import web

    app = (
        _aiohttp_decision_only() if variant == "decision-only" else bench_http.aiohttp_app(variant)
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    assert runner.server is not None
    handler = runner.server()
    transport = _Transport()
    handler.connection_made(transport)

    async def one() -> None:
        await transport.wait_for(1)  # aiohttp writes head and body at once
        handler.data_received(REQUEST)
        await transport.written.wait()
        for _ in range(2):  # the handler returns to the connection loop
            await asyncio.sleep(0)

    return one


async def _measure(server: str) -> dict[str, list[float]]:
    make = _uvicorn_one if server == "uvicorn" else _aiohttp_one
    ones = {variant: await make(variant) for variant in VARIANTS}
    for one in ones.values():  # warm-up
        for _ in range(300):
            await one()
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for round_no in range(ROUNDS):
        for variant in VARIANTS if round_no % 2 == 0 else VARIANTS[::-1]:
            one = ones[variant]
            start = time.process_time()
            for _ in range(REQUESTS):
                await one()
            times[variant].append((time.process_time() - start) / REQUESTS * 1e6)
    return times


def run() -> list[Row]:
    import aiohttp  # noqa: F401  (skip cleanly when an extra is missing)
    import httptools  # noqa: F401
    import uvicorn  # noqa: F401

    rows: list[Row] = []
    for server in ("uvicorn", "aiohttp"):
        times = asyncio.run(_measure(server))
        bare = statistics.median(times["bare"])
        for variant in VARIANTS:
            median = statistics.median(times[variant])
            rows.append(
                {
                    "table": (
                        f"{server} in process, no sockets: CPU us per request "
                        f"({ROUNDS} interleaved rounds of {REQUESTS})"
                    ),
                    "variant": LABELS[variant],
                    "us/request (median)": median,
                    "+us vs bare": median - bare,
                    "ratio (bare/this)": bare / median,
                    "min": min(times[variant]),
                }
            )
    return rows
