"""The per-request short paths agree with the general ones they shortcut.

Both adapters take a short path when the middleware has one route, a fixed
cost and an in-process limiter (the common setup, and the one the real-HTTP
benchmark measures); the ASGI one reads an IPv4 peer as the key inline.
These tests hold the short path to what the general path (forced here by a
rule that never matches) and the key extractor itself answer, and the header
builders' bytes and text forms to each other for every style and decision.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience import Decision, RateLimiter, TokenBucket
from resilience.asgi import RateLimitMiddleware
from resilience.testing import FakeClock
from resilience.web import Rule, client_ip
from resilience.web.headers import RateLimitHeaders

PEERS: list[Any] = [
    ("192.0.2.1", 1234),
    ("2001:db8::1", 1234),  # IPv6: grouped by /64
    ("::ffff:192.0.2.7", 1),  # an IPv4-mapped IPv6 peer: unmapped
    ("/tmp/app.sock", None),  # a unix socket path, as some servers report it
    None,  # no peer at all
    ("", 0),
]


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _call(app: Any, client: Any) -> tuple[int, list[tuple[bytes, bytes]]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "client": client}
    await app(scope, receive, send)
    return int(sent[0]["status"]), list(sent[0]["headers"])


@pytest.mark.parametrize("client", PEERS)
async def test_asgi_short_path_counts_the_same_key_as_the_general_path(client: Any) -> None:
    keys = {}
    for name, rules in (("short", ()), ("general", (Rule("/never-matches"),))):
        limiter = RateLimiter(TokenBucket(1, 60.0), clock=FakeClock(), name="p")
        app = RateLimitMiddleware(_app, limiter, rules=rules)
        assert (app._simple is not None) == (name == "short")
        status, _ = await _call(app, client)
        assert status == 200
        expected = client_ip().from_scope({"client": client})
        # The one unit went to exactly the key the extractor names.
        assert not limiter.try_acquire(expected).allowed
        keys[name] = expected
        assert (await _call(app, client))[0] == 429
    assert keys["short"] == keys["general"]


async def test_asgi_short_path_headers_match_the_builder_and_keep_the_apps() -> None:
    clock = FakeClock()
    limiter = RateLimiter(TokenBucket(5, 10.0), clock=clock, name="api")
    app = RateLimitMiddleware(_app, limiter)
    status, headers = await _call(app, ("192.0.2.1", 1))
    twin = RateLimiter(TokenBucket(5, 10.0), clock=FakeClock(), name="api")
    expected = RateLimitHeaders.for_algorithm("api", twin.algorithm, "ietf").asgi(
        twin.try_acquire("192.0.2.1")
    )
    assert status == 200 and headers == [(b"x-app", b"1"), *expected]


async def test_asgi_send_wrapper_hands_back_sends_awaitable() -> None:
    """No coroutine of its own per message: the wrapper returns what ``send`` returns."""
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(send)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limiter = RateLimiter(TokenBucket(5, 10.0), clock=FakeClock())
    await _call(RateLimitMiddleware(app, limiter), ("192.0.2.1", 1))
    assert not inspect.iscoroutinefunction(seen[0])


@settings(max_examples=200, deadline=None)
@given(
    allowed=st.booleans(),
    remaining=st.integers(-5, 10**9),
    retry=st.one_of(st.floats(0, 1e6, allow_nan=False), st.just(float("inf"))),
    reset=st.floats(0, 1e6, allow_nan=False),
    style=st.sampled_from(["ietf", "legacy", "both"]),
)
def test_bytes_and_text_headers_say_the_same(
    allowed: bool, remaining: int, retry: float, reset: float, style: Any
) -> None:
    decision = Decision(allowed, 10, remaining, 0.0 if allowed else retry, reset)
    builder = RateLimitHeaders("api", 10, 30.0, style)
    as_bytes = builder.asgi(decision)
    as_text = builder.text(decision)
    assert [(n.decode(), v.decode()) for n, v in as_bytes] == [(n.lower(), v) for n, v in as_text]
    assert builder.asgi(decision) is not as_bytes  # a fresh list: callers append Retry-After
