"""Real servers on 127.0.0.1 for the web-middleware tests (helpers only; no tests here).

``serve_asgi(app)`` runs uvicorn as a task of the test's event loop on a free
port (the OS picks it: port 0) and yields the base URL; ``serve_aiohttp(app)``
does the same with aiohttp's own server.  Startup waits are bounded, and
shutdown waits for the server task.  A structured-field parser for the
``RateLimit`` headers lives here too, so tests check the headers the way a
client would read them rather than by string comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from aiohttp import web
from aiohttp.test_utils import TestServer

STARTUP_TIMEOUT = 10.0


class _QuietServer(uvicorn.Server):
    """uvicorn without signal handlers: the test runner owns SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, **options: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (free port); yield ``http://127.0.0.1:<port>``."""
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "log_level": "warning",
        "lifespan": "auto",
        "http": "h11",  # the same parser whether or not httptools (the bench extra) is installed
        "ws": "websockets-sansio",
        "proxy_headers": False,  # uvicorn would rewrite the peer from X-Forwarded-For itself
        "h11_max_incomplete_event_size": 512 * 1024,  # lets 64 KiB headers reach the app
        "access_log": False,
    }
    settings.update(options)
    server = _QuietServer(uvicorn.Config(app, **settings))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn exited during startup")
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(STARTUP_TIMEOUT):
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def serve_aiohttp(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp application on 127.0.0.1 (free port); yield its base URL."""
    server = TestServer(app, host="127.0.0.1", port=0)
    async with asyncio.timeout(STARTUP_TIMEOUT):
        await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


# -- reading the IETF fields as a client would (RFC 9651 lists of items) -------------------

_ITEM = re.compile(
    r'\s*"(?P<name>(?:[^"\\]|\\.)*)"(?P<params>(?:;[a-z*][a-z0-9_.*-]*(?:=[^;,]*)?)*)\s*(?:,|$)'
)


def parse_sf_list(value: str) -> dict[str, dict[str, object]]:
    """``'"api";r=4;t=10'`` -> ``{"api": {"r": 4, "t": 10}}``; raises on anything malformed."""
    items: dict[str, dict[str, object]] = {}
    position = 0
    while position < len(value):
        match = _ITEM.match(value, position)
        if match is None or match.end() == position:
            raise ValueError(f"not a structured-field list of string items: {value!r}")
        params: dict[str, object] = {}
        for param in match.group("params").split(";")[1:]:
            name, _, raw = param.partition("=")
            if re.fullmatch(r"-?\d{1,15}", raw):
                params[name] = int(raw)
            elif raw.startswith('"') and raw.endswith('"'):
                params[name] = raw[1:-1]
            else:
                raise ValueError(f"unexpected parameter value {param!r} in {value!r}")
        items[re.sub(r"\\(.)", r"\1", match.group("name"))] = params
        position = match.end()
    return items


def ratelimit_fields(headers: Any) -> tuple[dict[str, object], dict[str, object]]:
    """The single policy's (RateLimit-Policy params, RateLimit params) from response headers."""
    values = all_values(headers)
    policies = parse_sf_list(", ".join(values("ratelimit-policy")))
    limits = parse_sf_list(", ".join(values("ratelimit")))
    assert len(policies) == 1 and policies.keys() == limits.keys(), (policies, limits)
    name = next(iter(policies))
    return policies[name], limits[name]


def all_values(headers: Any) -> Any:
    """``values(name)`` -> every value of a response header (httpx or aiohttp headers)."""
    get_list = getattr(headers, "get_list", None)
    if get_list is not None:
        return get_list
    return lambda name: headers.getall(name, [])
