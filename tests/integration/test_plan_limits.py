"""Per-plan limits (``PlanLimits``) behind real uvicorn and aiohttp servers, driven by httpx.

An authentication layer in front of the rate limiter resolves the API key to
a principal and its plan (``scope["state"]`` in ASGI, ``request["plan"]`` in
aiohttp); the limiter is picked from that plan.  Limiters run on a FakeClock,
so nothing refills while a test runs and every 429 is exact.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from resilience import RateLimiter, TokenBucket
from resilience.aiohttp import rate_limit_middleware
from resilience.asgi import PlanLimits, RateLimitMiddleware, Rule, header
from resilience.testing import FakeClock
from tests.integration.servers import parse_sf_list, serve_aiohttp, serve_asgi

KINDS = ["asgi", "aiohttp"]
PLAN: Any = web.RequestKey("plan", object)
ACCOUNTS = {"k-free": "free", "k-free-2": "free", "k-paid": "paid", "k-odd": "platinum"}


def bad_plan(plan: object) -> object:
    if plan == "banned":
        raise ValueError("this account is suspended")
    return plan


def asgi_app(limiter: Any, **options: Any) -> Any:
    async def hello(request: Request) -> Response:
        return PlainTextResponse("hello")

    inner = Starlette(routes=[Route("/", hello), Route("/export", hello), Route("/login", hello)])
    limited = RateLimitMiddleware(inner, limiter, key=header("X-API-Key"), **options)

    async def authenticate(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            key = dict(scope["headers"]).get(b"x-api-key", b"").decode()
            scope.setdefault("state", {})["plan"] = ACCOUNTS.get(key, key or None)
        await limited(scope, receive, send)

    return authenticate


def aiohttp_app(limiter: Any, **options: Any) -> web.Application:
    async def hello(request: web.Request) -> web.StreamResponse:
        return web.Response(text="hello")

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.headers.get("X-API-Key", "")
        request[PLAN] = ACCOUNTS.get(key, key or None)
        return await handler(request)

    app = web.Application(
        middlewares=[
            authenticate,
            rate_limit_middleware(limiter, key=header("X-API-Key"), **options),
        ]
    )
    for path in ("/", "/export", "/login"):
        app.router.add_get(path, hello)
    return app


def plans(kind: str, clock: FakeClock, **extra: RateLimiter) -> PlanLimits:
    if kind == "asgi":

        def plan(scope: Any) -> object:
            return bad_plan(scope["state"].get("plan"))
    else:

        def plan(scope: Any) -> object:
            return bad_plan(scope.get(PLAN))

    return PlanLimits(
        plan,
        {
            "free": RateLimiter(TokenBucket(2, 60.0), clock=clock, name="free"),
            "paid": RateLimiter(TokenBucket(5, 60.0), clock=clock, name="paid"),
            **extra,
        },
        default="free",
    )


@asynccontextmanager
async def running(kind: str, limiter: Any, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    if kind == "asgi":
        server = serve_asgi(asgi_app(limiter, **options))
    else:
        server = serve_aiohttp(aiohttp_app(limiter, **options))
    async with server as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


async def statuses(client: httpx.AsyncClient, key: str, count: int, path: str = "/") -> list[int]:
    headers = {"X-API-Key": key} if key else {}
    return [(await client.get(path, headers=headers)).status_code for _ in range(count)]


def policy_of(response: httpx.Response) -> tuple[str, dict[str, object]]:
    policies = parse_sf_list(", ".join(response.headers.get_list("ratelimit-policy")))
    assert len(policies) == 1, policies
    return next(iter(policies.items()))


@pytest.mark.parametrize("kind", KINDS)
async def test_each_plan_gets_its_own_limit_and_policy_header(kind: str) -> None:
    async with running(kind, plans(kind, FakeClock())) as client:
        assert await statuses(client, "k-free", 3) == [200, 200, 429]
        assert await statuses(client, "k-paid", 6) == [200] * 5 + [429]
        # the limit is per key within a plan: another free account has its own budget
        assert await statuses(client, "k-free-2", 3) == [200, 200, 429]

        free = await client.get("/", headers={"X-API-Key": "k-free"})
        paid = await client.get("/", headers={"X-API-Key": "k-paid"})
        assert policy_of(free) == ("free", {"q": 2, "w": 60})
        assert policy_of(paid) == ("paid", {"q": 5, "w": 60})
        assert json.loads(free.content)["policy"] == "free"
        assert free.headers["retry-after"] == "30"


@pytest.mark.parametrize("kind", KINDS)
async def test_unknown_or_missing_plan_gets_the_default_never_unlimited(kind: str) -> None:
    async with running(kind, plans(kind, FakeClock())) as client:
        odd = await statuses(client, "k-odd", 3)  # plan "platinum" is not configured
        assert odd == [200, 200, 429]
        anonymous = await client.get("/")
        assert policy_of(anonymous)[0] == "free"


@pytest.mark.parametrize("kind", KINDS)
async def test_rules_apply_within_each_plan(kind: str) -> None:
    clock = FakeClock()
    login = RateLimiter(TokenBucket(1, 60.0), clock=clock, name="login")
    rules = [
        Rule("/login", limiter=login),  # its own limiter, whatever the plan
        Rule("/export", cost=2),  # the plan's limiter at double cost
    ]
    async with running(kind, plans(kind, clock), rules=rules) as client:
        assert await statuses(client, "k-paid", 2, "/login") == [200, 429]
        assert await statuses(client, "k-free", 2, "/login") == [200, 429]
        assert await statuses(client, "k-paid", 3, "/export") == [200, 200, 429]  # 5 // 2
        export = await client.get("/export", headers={"X-API-Key": "k-free"})
        assert export.status_code == 200 and policy_of(export)[0] == "free"
        assert await statuses(client, "k-free", 1, "/export") == [429]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_plan_function_refusing_the_request_is_a_400_problem(kind: str) -> None:
    async with running(kind, plans(kind, FakeClock())) as client:
        response = await client.get("/", headers={"X-API-Key": "banned"})
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        assert "suspended" in json.loads(response.content)["detail"]
