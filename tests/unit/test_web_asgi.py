"""The ASGI middlewares in process: scopes that pass through, edge cases, configuration errors.

The end-to-end behaviour is tested with real servers in tests/integration;
these are the cases a server makes awkward to reach (an app that raises a
policy error of its own, a cost that can never fit, a cancelled request).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import MutableMapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.asgi import BulkheadMiddleware, CircuitBreakerMiddleware, RateLimitMiddleware
from resilience.breaker import CircuitBreaker, CircuitState
from resilience.bulkhead import Bulkhead
from resilience.errors import BulkheadFull
from resilience.testing import FakeClock
from tests.ratelimit_kit import (
    GCRA,
    FixedWindow,
    LeakyBucket,
    RateLimiter,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)

Message = dict[str, Any]


class App:
    """An ASGI app that records the scopes it got and answers with ``status``."""

    def __init__(self, status: int = 200, raises: BaseException | None = None) -> None:
        self.status = status
        self.raises = raises
        self.scopes: list[MutableMapping[str, Any]] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        if self.raises is not None:
            raise self.raises
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})


async def call(app: Any, scope_type: str = "http", **extra: Any) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": scope_type,
        "method": "GET",
        "path": "/",
        "headers": [],
        "client": ("192.0.2.1", 1234),
        **extra,
    }
    await app(scope, receive, send)
    return sent


def status(sent: list[Message]) -> int:
    return int(sent[0]["status"])


def headers(sent: list[Message]) -> dict[bytes, bytes]:
    return dict(sent[0]["headers"])


@pytest.mark.parametrize("scope_type", ["lifespan", "websocket"])
async def test_non_http_scopes_pass_through_untouched(scope_type: str) -> None:
    limiter = RateLimiter(TokenBucket(1, 60.0), clock=FakeClock())
    breaker = CircuitBreaker("c", consecutive_failures=1)
    breaker.force_open()
    bulkhead = Bulkhead("b", max_concurrent=1)
    inner = App()
    app = RateLimitMiddleware(inner, limiter)
    app = BulkheadMiddleware(app, bulkhead)  # type: ignore[assignment]
    app = CircuitBreakerMiddleware(app, breaker)  # type: ignore[assignment]
    for _ in range(3):
        assert await call(app, scope_type) == []
    assert len(inner.scopes) == 3 and all(s["type"] == scope_type for s in inner.scopes)
    assert limiter.try_acquire("192.0.2.1").allowed  # no quota was spent


async def test_exempt_callable_skips_limiting() -> None:
    limiter = RateLimiter(TokenBucket(1, 60.0), clock=FakeClock())
    app = RateLimitMiddleware(App(), limiter, exempt=lambda scope: scope["path"] == "/")
    for _ in range(3):
        sent = await call(app)
        assert status(sent) == 200 and b"ratelimit" not in headers(sent)


async def test_cost_callable_and_a_cost_that_never_fits() -> None:
    limiter = RateLimiter(TokenBucket(5, 60.0), clock=FakeClock(), name="p")
    app = RateLimitMiddleware(App(), limiter, cost=lambda scope: 2 if scope["path"] == "/" else 9)
    assert [status(await call(app)) for _ in range(3)] == [200, 200, 429]
    sent = await call(app, path="/big")
    assert status(sent) == 429
    assert b"retry-after" not in headers(sent)
    assert "more than" in json.loads(sent[1]["body"])["detail"]


async def test_headers_none_and_refunds_without_headers() -> None:
    limiter = RateLimiter(TokenBucket(1, 60.0), clock=FakeClock())
    app = RateLimitMiddleware(App(status=403), limiter, headers=None, refund_statuses={403})
    for _ in range(3):
        sent = await call(app)
        assert status(sent) == 403 and headers(sent) == {}


async def test_bulkhead_error_raised_by_the_app_is_not_our_refusal() -> None:
    app = BulkheadMiddleware(App(raises=BulkheadFull("inner")), Bulkhead("outer"))
    with pytest.raises(BulkheadFull):
        await call(app)


async def test_breaker_counts_statuses_and_exceptions_not_cancellation() -> None:
    breaker = CircuitBreaker("c", consecutive_failures=2, clock=FakeClock())
    cancelled = CircuitBreakerMiddleware(App(raises=asyncio.CancelledError()), breaker)
    for _ in range(3):
        with pytest.raises(asyncio.CancelledError):
            await call(cancelled)
    assert breaker.snapshot().state == CircuitState.CLOSED
    assert status(await call(CircuitBreakerMiddleware(App(status=404), breaker))) == 404
    with pytest.raises(RuntimeError):
        await call(CircuitBreakerMiddleware(App(raises=RuntimeError()), breaker))
    sent = await call(CircuitBreakerMiddleware(App(status=500), breaker))
    assert status(sent) == 500
    assert breaker.state == CircuitState.OPEN
    custom = CircuitBreakerMiddleware(
        App(status=429), CircuitBreaker("d", consecutive_failures=1), failure_statuses={429}
    )
    await call(custom)
    assert status(await call(custom)) == 503


async def test_an_app_that_sends_nothing_is_a_failure() -> None:
    class Silent:
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            return None

    breaker = CircuitBreaker("c", consecutive_failures=1, clock=FakeClock())
    await call(CircuitBreakerMiddleware(Silent(), breaker))
    assert breaker.state == CircuitState.OPEN


def test_configuration_errors_name_the_field() -> None:
    limiter = RateLimiter(TokenBucket(1, 60.0))
    app = App()
    with pytest.raises(ValueError, match="app"):
        RateLimitMiddleware(None, limiter)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limiter"):
        RateLimitMiddleware(app, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="headers"):
        RateLimitMiddleware(app, limiter, headers="draft")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exempt"):
        RateLimitMiddleware(app, limiter, exempt=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refund_statuses"):
        RateLimitMiddleware(app, limiter, refund_statuses={42})
    with pytest.raises(ValueError, match="bulkhead"):
        BulkheadMiddleware(app, limiter)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_after"):
        BulkheadMiddleware(app, Bulkhead("b"), retry_after=float("inf"))
    with pytest.raises(ValueError, match="breaker"):
        CircuitBreakerMiddleware(app, limiter)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="failure_statuses"):
        CircuitBreakerMiddleware(app, CircuitBreaker("c"), failure_statuses="5xx")  # type: ignore[arg-type]


def test_aiohttp_configuration_errors_name_the_field() -> None:
    from resilience.aiohttp import (
        bulkhead_middleware,
        circuit_breaker_middleware,
        rate_limit_middleware,
    )

    with pytest.raises(ValueError, match="limiter"):
        rate_limit_middleware(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_after"):
        bulkhead_middleware(Bulkhead("b"), retry_after=-1)
    with pytest.raises(ValueError, match="breaker"):
        circuit_breaker_middleware(None)  # type: ignore[arg-type]


def test_the_core_web_package_imports_no_web_framework() -> None:
    code = (
        "import sys, resilience.web, resilience.web.rules, resilience.web.headers;"
        "bad = [m for m in ('starlette', 'aiohttp', 'fastapi', 'litestar', 'uvicorn')"
        " if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_resilience_aiohttp_does_not_shadow_aiohttp() -> None:
    code = (
        "import resilience.aiohttp as ours, aiohttp;"
        "print(ours.__name__, aiohttp.__name__, hasattr(aiohttp, 'ClientSession'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["resilience.aiohttp", "aiohttp", "True"]


# -- property: the middleware answers exactly what the limiter decides --------------------

ALGORITHMS = [
    lambda: GCRA(3, 2.0),
    lambda: TokenBucket(2, 1.5, burst=4),
    lambda: FixedWindow(3, 2.0),
    lambda: SlidingWindowLog(3, 2.0),
    lambda: SlidingWindowCounter(4, 2.0, buckets=2),
    lambda: LeakyBucket(2, 1.0, capacity=3),
]


@settings(max_examples=80, deadline=None)
@given(
    make=st.sampled_from(ALGORITHMS),
    steps=st.lists(st.tuples(st.floats(0.0, 3.0), st.sampled_from(["a", "b"])), max_size=25),
)
def test_429_exactly_when_the_limiter_refuses(make: Any, steps: list[tuple[float, str]]) -> None:
    clock = FakeClock(100.0)
    limiter = RateLimiter(make(), clock=clock, name="p")
    oracle = RateLimiter(make(), clock=clock)
    app = RateLimitMiddleware(App(), limiter, headers="both")

    async def scenario() -> None:
        for step, client in steps:
            clock.advance(step)
            expected = oracle.try_acquire(client)
            sent = await call(app, client=(client, 1))
            found = headers(sent)
            assert status(sent) == (200 if expected.allowed else 429)
            assert found[b"x-ratelimit-remaining"] == b"%d" % (
                max(0, expected.remaining) if expected.allowed else 0
            )
            if not expected.allowed:
                wait = int(found[b"retry-after"])
                assert wait >= expected.retry_after
                assert found[b"x-ratelimit-reset"] == b"%d" % wait

    asyncio.run(scenario())


@settings(max_examples=60, deadline=None)
@given(
    make=st.sampled_from(ALGORITHMS),
    steps=st.lists(st.floats(0.0, 2.0), max_size=20),
)
def test_waiting_retry_after_always_succeeds(make: Any, steps: list[float]) -> None:
    clock = FakeClock(0.0)
    app = RateLimitMiddleware(App(), RateLimiter(make(), clock=clock))

    async def scenario() -> None:
        for step in steps:
            clock.advance(step)
            sent = await call(app)
            if status(sent) == 429:
                clock.advance(int(headers(sent)[b"retry-after"]))
                assert status(await call(app)) == 200

    asyncio.run(scenario())
