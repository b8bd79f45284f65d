"""Web middleware overhead per request, in process: ours against a bare app and slowapi.

Every app is driven directly through ASGI with a minimal scope, ``receive``
and ``send`` (no sockets, no HTTP parsing), so the figures are about the
middleware and the framework alone.  Each request gets a fresh copy of the
scope and a fresh ``scope["state"]`` (Starlette writes into both, and slowapi
marks a request as checked in its state), for the bare app too.

Two baselines, both measured in this run: a bare Starlette app (one route
answering ``PlainTextResponse("ok")``, the ordinary way our middleware is
used) and a bare raw-ASGI app (to show the middleware's own cost without a
framework around it).  Peers: slowapi's ``SlowAPIMiddleware``
(``BaseHTTPMiddleware``), its pure-ASGI ``SlowAPIASGIMiddleware`` and its
``@limiter.limit`` decorator, each with an in-memory ``limits`` store.

Every limiter allows every request (10**9 per hour, one client key), so this
is the allowed path; the bar (DESIGN.md section 5): rate-limit middleware
adds <= 8 us per request.

Run: ``python -m benchmarks.bench_asgi`` (or ``python -m benchmarks asgi``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from benchmarks._harness import Timing, time_async
from resilience.asgi import (
    BulkheadMiddleware,
    CircuitBreakerMiddleware,
    PlanLimits,
    RateLimitMiddleware,
    Rule,
    client_ip,
)
from resilience.breaker import CircuitBreaker
from resilience.bulkhead import Bulkhead
from resilience.ratelimit.algorithms import GCRA
from resilience.ratelimit.limiter import RateLimiter

Row = dict[str, Any]
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

BAR_US = 8.0
BIG = 10**9
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "root_path": "",
    "query_string": b"",
    "headers": [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"bench"),
        (b"accept", b"*/*"),
        (b"x-forwarded-for", b"203.0.113.7, 10.0.0.2"),
    ],
    "client": ("10.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
    "state": {},
}
REQUEST: dict[str, Any] = {"type": "http.request", "body": b"", "more_body": False}


async def receive() -> dict[str, Any]:
    return REQUEST


async def discard(message: dict[str, Any]) -> None:
    return None


def limiter() -> RateLimiter:
    return RateLimiter(GCRA(BIG, 3600.0), name="bench")


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


def starlette(*middleware: Middleware) -> Starlette:
    return Starlette(routes=[Route("/", ok)], middleware=list(middleware))


async def raw_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


def ours() -> list[tuple[str, str, Any]]:
    """(table, name, app) for every configuration of ours."""
    rules = [
        Rule("/login", methods={"POST"}),
        Rule("/health", exempt=True),
        Rule("/api/**"),
        Rule("/**"),
    ]
    proxies = client_ip(trusted_proxies=["10.0.0.0/8"])
    framework = "Starlette"
    return [
        (framework, "bare Starlette", starlette()),
        (
            framework,
            "RateLimitMiddleware, headers='ietf'",
            starlette(Middleware(RateLimitMiddleware, limiter())),
        ),
        (
            framework,
            "RateLimitMiddleware, headers=None",
            starlette(Middleware(RateLimitMiddleware, limiter(), headers=None)),
        ),
        (
            framework,
            "RateLimitMiddleware, headers='both'",
            starlette(Middleware(RateLimitMiddleware, limiter(), headers="both")),
        ),
        (
            framework,
            "RateLimitMiddleware, trusted proxy + X-Forwarded-For",
            starlette(Middleware(RateLimitMiddleware, limiter(), key=proxies)),
        ),
        (
            framework,
            "RateLimitMiddleware, 4 rules (last one matches)",
            starlette(Middleware(RateLimitMiddleware, limiter(), rules=rules)),
        ),
        (
            framework,
            "BulkheadMiddleware",
            starlette(Middleware(BulkheadMiddleware, Bulkhead("bench", max_concurrent=100))),
        ),
        (
            framework,
            "CircuitBreakerMiddleware",
            starlette(Middleware(CircuitBreakerMiddleware, CircuitBreaker("bench"))),
        ),
        (
            framework,
            "all three",
            starlette(
                Middleware(RateLimitMiddleware, limiter()),
                Middleware(BulkheadMiddleware, Bulkhead("bench", max_concurrent=100)),
                Middleware(CircuitBreakerMiddleware, CircuitBreaker("bench")),
            ),
        ),
    ]


def slowapi_apps() -> list[tuple[str, str, Any]]:
    try:
        from slowapi import Limiter, _rate_limit_exceeded_handler
        from slowapi.errors import RateLimitExceeded
        from slowapi.middleware import SlowAPIASGIMiddleware, SlowAPIMiddleware
        from slowapi.util import get_remote_address
    except ImportError:
        return []
    rows: list[tuple[str, str, Any]] = []
    limit = f"{BIG}/hour"
    for name, middleware in (
        ("slowapi SlowAPIMiddleware (BaseHTTPMiddleware)", SlowAPIMiddleware),
        ("slowapi SlowAPIASGIMiddleware", SlowAPIASGIMiddleware),
    ):
        peer = Limiter(key_func=get_remote_address, default_limits=[limit], storage_uri="memory://")
        app = starlette(Middleware(middleware))
        app.state.limiter = peer
        app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
        rows.append(("Starlette", name, app))
    peer = Limiter(key_func=get_remote_address, storage_uri="memory://")

    @peer.limit(limit)
    async def limited(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", limited)])
    app.state.limiter = peer
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
    rows.append(("Starlette", "slowapi @limiter.limit decorator", app))
    return rows


def plans() -> PlanLimits:
    """Two plans; the plan read from the scope's state (as an auth middleware would leave it)."""
    return PlanLimits(
        lambda scope: scope["state"].get("plan"),
        {"free": limiter(), "paid": RateLimiter(GCRA(BIG, 3600.0), name="paid")},
        default="free",
    )


def raw_apps() -> list[tuple[str, str, Any]]:
    table = "raw ASGI app (no framework)"
    return [
        (table, "bare ASGI app", raw_app),
        (table, "RateLimitMiddleware, headers='ietf'", RateLimitMiddleware(raw_app, limiter())),
        (
            table,
            "RateLimitMiddleware, PlanLimits (2 plans), headers='ietf'",
            RateLimitMiddleware(raw_app, plans()),
        ),
        (
            table,
            "RateLimitMiddleware, headers=None",
            RateLimitMiddleware(raw_app, limiter(), headers=None),
        ),
        (table, "BulkheadMiddleware", BulkheadMiddleware(raw_app, Bulkhead("b", max_concurrent=9))),
        (table, "CircuitBreakerMiddleware", CircuitBreakerMiddleware(raw_app, CircuitBreaker("c"))),
    ]


def _check(app: Any) -> None:
    """Premise: the app answers 200 (a benchmark of a refusal would flatter everyone)."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def once() -> None:
        await app({**SCOPE, "state": {}}, receive, send)

    asyncio.run(once())
    if not sent or sent[0].get("status") != 200:
        raise AssertionError(f"benchmark premise failed: {app!r} answered {sent[:1]}")


def _time(app: Any) -> Timing:
    scope = SCOPE

    async def request() -> None:
        await app({**scope, "state": {}}, receive, discard)

    return time_async(request, repeat=9, target=0.1)


def run() -> list[Row]:
    rows: list[Row] = []
    groups: dict[str, list[tuple[str, Any]]] = {}
    for table, name, app in [*ours(), *slowapi_apps(), *raw_apps()]:
        groups.setdefault(table, []).append((name, app))
    for table, entries in groups.items():
        title = f"ASGI in process, per request, allowed path: {table}"
        base: Timing | None = None
        for name, app in entries:
            _check(app)
            timing = _time(app)
            base = base or timing
            added = (timing.min_ns - base.min_ns) / 1000
            row: Row = {
                "table": title,
                "name": name,
                "us_per_request": timing.min_ns / 1000,
                "us median": timing.median_ns / 1000,
                "+us vs bare": added,
                "ratio_to_bare": timing.ratio(base),
            }
            if name.startswith("RateLimitMiddleware"):
                row[f"<= +{BAR_US:g} us"] = "PASS" if added <= BAR_US else "FAIL"
            rows.append(row)
    return rows


def main() -> int:
    from benchmarks.__main__ import machine, markdown, tables

    print(f"Machine: {machine()}\n")
    for title, group in tables("bench_asgi", run()):
        print(f"### {title}\n\n{markdown(group)}\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
