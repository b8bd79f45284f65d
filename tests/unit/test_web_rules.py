"""Per-route rules: patterns, methods, first match wins, exempt, defaults, validation."""

from __future__ import annotations

import re

import pytest

from resilience import FixedWindow, RateLimiter, TokenBucket
from resilience.web.request_keys import client_ip, header
from resilience.web.rules import RouteTable, Rule, compile_path


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("/login", ["/login"], ["/login/", "/logins", "/LOGIN"]),
        ("/api/*", ["/api/x", "/api/"], ["/api/x/y", "/api"]),
        ("/api/**", ["/api/x", "/api/x/y/z", "/api/"], ["/apix", "/api"]),
        ("/users/{id}/posts", ["/users/42/posts"], ["/users//posts", "/users/1/2/posts"]),
        ("/files/*.png", ["/files/a.png"], ["/files/a.jpg", "/files/d/a.png"]),
        ("/a+b(c)", ["/a+b(c)"], ["/aab(c)"]),
        (re.compile(r"/v\d+/.*"), ["/v1/x", "/v22/"], ["/vx/", "/x/v1/"]),
    ],
)
def test_patterns(pattern: str | re.Pattern[str], yes: list[str], no: list[str]) -> None:
    matches = compile_path(pattern)
    assert all(matches(path) for path in yes)
    assert not any(matches(path) for path in no)


def test_first_match_wins_and_defaults_fill_in() -> None:
    default = RateLimiter(TokenBucket(100, 60.0), name="default")
    strict = RateLimiter(TokenBucket(5, 60.0), name="strict")
    api_key = header("X-API-Key")
    table = RouteTable(
        default,
        client_ip(),
        1,
        "ietf",
        [
            Rule("/health", exempt=True),
            Rule("/login", methods={"post"}, limiter=strict, cost=2),
            Rule("/api/**", key=api_key),
            Rule("/api/special", limiter=strict),  # shadowed by the rule above
            Rule("/search", methods={"GET"}, cost=lambda request: 3),
        ],
    )
    assert table.resolve("GET", "/health") is None
    login = table.resolve("POST", "/login")
    assert login is not None and login.limiter is strict and login.cost == 2
    assert table.resolve("GET", "/login") is table.default
    special = table.resolve("GET", "/api/special")
    assert special is not None and special.limiter is default and special.key is api_key
    head = table.resolve("HEAD", "/search")
    assert head is not None and head.cost_fn is not None and head.cost_fn(None) == 3
    assert table.resolve("POST", "/search") is table.default
    assert table.limiters == [default, strict]


def test_validation_names_the_field() -> None:
    limiter = RateLimiter(TokenBucket(1, 1.0))
    with pytest.raises(ValueError, match="path"):
        Rule("")
    with pytest.raises(ValueError, match="path"):
        Rule(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="methods"):
        Rule("/", methods="GET")
    with pytest.raises(ValueError, match="limiter"):
        Rule("/", limiter="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exempt"):
        Rule("/", exempt=True, limiter=limiter)
    with pytest.raises(ValueError, match="limiter"):
        RouteTable("nope", client_ip(), 1, "ietf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="headers"):
        RouteTable(limiter, client_ip(), 1, "rfc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cost"):
        RouteTable(limiter, client_ip(), 0, "ietf")
    with pytest.raises(ValueError, match="key"):
        RouteTable(limiter, "ip", 1, "ietf")
    with pytest.raises(ValueError, match="rules"):
        RouteTable(limiter, client_ip(), 1, "ietf", Rule("/"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rules"):
        RouteTable(limiter, client_ip(), 1, "ietf", ["/x"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="refund_statuses"):
        RouteTable(RateLimiter(FixedWindow(1, 1.0)), client_ip(), 1, "ietf", refund_statuses={401})
