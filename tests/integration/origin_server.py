"""A real aiohttp origin on 127.0.0.1 whose behaviour a failover test flips (helpers only).

``mode`` says how ``/{tail}`` answers: ``"ok"`` (200 with the origin's name),
``"503"``, ``"slow"`` (200 after ``delay`` seconds), ``"blackhole"`` (accepts
and never answers until the server stops) or ``"redirect"`` (302 to
``redirect_to``).  ``health`` says how ``/healthz`` answers (``"ok"`` or
``"fail"``, or ``"blackhole"``).  ``stop()`` closes the listening socket (connecting is then
refused); ``start()`` listens again on the same port.  Every request is
recorded in ``hits`` as (method, path, headers, body).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SHUTDOWN_TIMEOUT = 2.0


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedOrigin:
    name: str
    mode: str = "ok"
    health: str = "ok"
    delay: float = 0.0
    burst: int = 0  # the next `burst` requests get 503 whatever the mode
    error_padding: int = 0  # bytes added to a 503 body (a big body is not read ahead)
    redirect_to: str = ""
    hits: list[Hit] = field(default_factory=list)
    health_hits: int = 0
    disconnects: int = 0  # slow requests whose client hung up before the answer
    port: int = 0
    _runner: web.AppRunner | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        self.health_hits += 1
        if self.health == "blackhole":
            await self._release.wait()
        return web.Response(status=200 if self.health == "ok" else 503, text=self.health)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.hits.append(Hit(request.method, request.path_qs, dict(request.headers), body))
        if self.burst > 0 or self.mode == "503":
            self.burst = max(0, self.burst - 1)
            padding = "." * self.error_padding
            return web.Response(status=503, text=f"{self.name} unavailable{padding}")
        if self.mode == "slow":
            await self._sleep_unless_gone(request, self.delay)
        elif self.mode == "blackhole":
            await self._release.wait()
        elif self.mode == "redirect":
            raise web.HTTPFound(self.redirect_to)
        return web.Response(text=f"{self.name}:{request.method}:{body.decode() or '-'}")

    async def _sleep_unless_gone(self, request: web.Request, seconds: float) -> None:
        """Sleep in steps; stop early (counting it) when the client closed the connection."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            transport = request.transport
            if transport is None or transport.is_closing():
                self.disconnects += 1
                return
            await asyncio.sleep(0.01)

    async def start(self) -> None:
        self._release = asyncio.Event()
        self._runner = web.AppRunner(self.app(), shutdown_timeout=SHUTDOWN_TIMEOUT)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            server: Any = site._server  # the port the OS picked
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._release.set()  # black-holed handlers finish
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
