"""Request id and hashed principal in structlog contextvars, bound by the web middleware.

Real servers (uvicorn, aiohttp) and a real client; structlog configured with
``merge_contextvars`` and a capturing processor.  The rate limiter's
rejection event, logged by ``StructlogSink`` while the request runs, must
carry the request id and the principal's digest, never the raw credential.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog
from aiohttp import web
from structlog.testing import LogCapture

from resilience import EventBus, FixedWindow, RateLimiter
from resilience.aiohttp import log_context_middleware, rate_limit_middleware
from resilience.asgi import LogContextMiddleware, RateLimitMiddleware
from resilience.events import StructlogSink
from resilience.web.logcontext import LogContext
from resilience.web.request_keys import DEFAULT_HASHER
from tests.integration.servers import serve_aiohttp, serve_asgi

SECRET = "sk_live_do_not_log"


@pytest.fixture
def captured() -> Iterator[LogCapture]:
    capture = LogCapture()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        yield capture
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()


def limiter() -> RateLimiter:
    bus = EventBus([StructlogSink(min_level="debug")])
    return RateLimiter(FixedWindow(1, 3600.0), name="api", events=bus)


def check_logs(capture: LogCapture, request_ids: list[str]) -> None:
    handled = [e for e in capture.entries if e["event"] == "handled"]
    rejected = [e for e in capture.entries if e["event"] == "rate_limited"]
    assert [e["request_id"] for e in handled] == request_ids[:1]
    assert [e["request_id"] for e in rejected] == request_ids[1:]
    digest = f"#{DEFAULT_HASHER.digest(SECRET)}"
    assert all(e["principal"] == digest for e in handled + rejected)
    assert SECRET not in repr(capture.entries)


async def test_asgi_binds_request_id_and_hashed_principal(captured: LogCapture) -> None:
    log = structlog.get_logger("app")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        log.info("handled")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def principal(scope: Any) -> str | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return str(value.decode().removeprefix("Bearer "))
        return None

    wrapped = LogContextMiddleware(RateLimitMiddleware(app, limiter()), principal=principal)
    auth = {"Authorization": f"Bearer {SECRET}"}
    async with serve_asgi(wrapped) as base, httpx.AsyncClient(base_url=base) as client:
        first = await client.get("/", headers={**auth, "X-Request-ID": "req-1"})
        second = await client.get("/", headers={**auth, "X-Request-ID": "bad id \x7f"})
        repeated = await client.get(
            "/",
            headers=[
                ("Authorization", auth["Authorization"]),
                ("X-Request-ID", "a"),
                ("X-Request-ID", "b"),
            ],
        )
    assert (first.status_code, second.status_code, repeated.status_code) == (200, 429, 429)
    assert first.headers["x-request-id"] == "req-1"
    generated = second.headers["x-request-id"]
    assert len(generated) == 32 and generated != "bad id"
    assert repeated.headers["x-request-id"] not in ("a", "b")
    check_logs(captured, ["req-1", generated, repeated.headers["x-request-id"]])
    assert structlog.contextvars.get_contextvars() == {}  # nothing leaks out of the request


async def test_aiohttp_binds_request_id_and_hashed_principal(captured: LogCapture) -> None:
    log = structlog.get_logger("app")

    async def handle(request: web.Request) -> web.Response:
        log.info("handled")
        return web.Response(text="ok")

    app = web.Application(
        middlewares=[
            log_context_middleware(
                principal=lambda r: (
                    r.headers.get("Authorization", "").removeprefix("Bearer ") or None
                )
            ),
            rate_limit_middleware(limiter()),
        ]
    )
    app.router.add_get("/", handle)
    auth = {"Authorization": f"Bearer {SECRET}"}
    async with serve_aiohttp(app) as base, httpx.AsyncClient(base_url=base) as client:
        first = await client.get("/", headers={**auth, "X-Request-ID": "req-1"})
        second = await client.get("/", headers=auth)
    assert (first.status_code, second.status_code) == (200, 429)
    assert first.headers["x-request-id"] == "req-1"
    generated = second.headers["x-request-id"]
    check_logs(captured, ["req-1", generated])


def test_options_are_validated_and_plain_principals_stay_readable() -> None:
    with pytest.raises(ValueError, match="header"):
        LogContext(header="bad header")
    with pytest.raises(ValueError, match="principal"):
        LogContext(principal="user")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hash_key"):
        LogContext(hash_principal=False, hash_key=b"k" * 32)
    plain: LogContext[str] = LogContext(principal=lambda r: r, hash_principal=False)
    assert plain.fields("tenant-a", "id-1") == {"request_id": "id-1", "principal": "tenant-a"}
    keyed: LogContext[str] = LogContext(principal=lambda r: r, hash_key=b"k" * 32)
    assert keyed.fields("tenant-a", None)["principal"] != f"#{DEFAULT_HASHER.digest('tenant-a')}"
    assert "principal" not in keyed.fields("", None)  # unusable principal: not bound
