"""Header values (IETF structured fields and legacy), Retry-After rounding, problem bodies."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience import Decision
from resilience.web.headers import (
    RateLimitHeaders,
    delay_seconds,
    policy_window,
    retry_after_seconds,
    sf_string,
)
from resilience.web.problem import circuit_open_body, overloaded_body, rate_limited_body
from tests.integration.servers import parse_sf_list


def allowed(remaining: int, reset_after: float) -> Decision:
    return Decision(True, 10, remaining, 0.0, reset_after)


def refused(retry_after: float, reset_after: float = 60.0) -> Decision:
    return Decision(False, 10, 0, retry_after, reset_after)


def test_ietf_fields() -> None:
    headers = dict(RateLimitHeaders("api", 100, 60.0, "ietf").text(allowed(42, 16.2)))
    assert headers == {"RateLimit-Policy": '"api";q=100;w=60', "RateLimit": '"api";r=42;t=17'}
    assert parse_sf_list(headers["RateLimit"]) == {"api": {"r": 42, "t": 17}}
    refusal = dict(RateLimitHeaders("api", 100, 60.0, "ietf").text(refused(0.2)))
    assert refusal["RateLimit"] == '"api";r=0;t=1'


def test_legacy_and_both() -> None:
    legacy = RateLimitHeaders("api", 5, 1.0, "legacy").asgi(allowed(3, 0.4))
    assert legacy == [
        (b"x-ratelimit-limit", b"5"),
        (b"x-ratelimit-remaining", b"3"),
        (b"x-ratelimit-reset", b"1"),
    ]
    names = [k for k, _ in RateLimitHeaders("api", 5, 1.0, "both").asgi(allowed(3, 0.4))]
    assert names == [
        b"ratelimit-policy",
        b"ratelimit",
        b"x-ratelimit-limit",
        b"x-ratelimit-remaining",
        b"x-ratelimit-reset",
    ]
    assert RateLimitHeaders("api", 5, 1.0, None).asgi(allowed(3, 0.4)) == []


def test_a_cost_that_never_fits_reports_the_reset() -> None:
    never = Decision(False, 10, 4, math.inf, 12.5)
    headers = dict(RateLimitHeaders("api", 10, 60.0, "ietf").text(never))
    assert headers["RateLimit"] == '"api";r=4;t=13'
    assert retry_after_seconds(math.inf) is None


def test_policy_names_are_escaped_structured_strings() -> None:
    assert sf_string('we"ird\\name') == '"we\\"ird\\\\name"'
    name = 'gcra:100 per 60 s "x"'
    value = dict(RateLimitHeaders(name, 100, 60.0, "ietf").text(allowed(1, 1.0)))["RateLimit"]
    assert parse_sf_list(value) == {'gcra:100 per 60 s "x"': {"r": 1, "t": 1}}


@pytest.mark.parametrize("name", ["n\u00e4me", "tab\there", "", "\u7387", "cr\r"])
def test_names_a_header_cannot_carry_are_refused_not_altered(name: str) -> None:
    """Issue 9: 'näme' went out as 'n?me' in headers and 'näme' in the body (and could collide)."""
    with pytest.raises(ValueError, match="printable ASCII"):
        RateLimitHeaders(name, 10, 1.0, "ietf")
    with pytest.raises(ValueError, match="printable ASCII"):
        sf_string(name)


@pytest.mark.parametrize(
    ("limit", "period", "expected"),
    [(100, 60.0, (100, 60)), (10, 0.5, (10, 1)), (3, 1.5, (3, 2)), (1, 0.001, (1, 1))],
)
def test_windows_are_whole_seconds_without_overstating_the_rate(
    limit: int, period: float, expected: tuple[int, int]
) -> None:
    """q is what passes *at once*: a 0.5 s window of 10 never admits 20 in one instant."""
    quota, window = policy_window(limit, period)
    assert (quota, window) == expected
    assert quota / window <= limit / period + 1e-9


def test_t_is_capped_at_the_window() -> None:
    builder = RateLimitHeaders("api", 2, 30.0, "ietf")
    assert dict(builder.text(allowed(1, 41.0)))["RateLimit"] == '"api";r=1;t=30'
    refusal = builder.text(refused(45.0))
    assert dict(refusal)["RateLimit"] == '"api";r=0;t=30'  # Retry-After carries the 45


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0.0, max_value=1e9, allow_nan=False))
def test_delay_seconds_rounds_up(seconds: float) -> None:
    whole = delay_seconds(seconds)
    assert whole >= seconds
    assert whole - 1 < seconds
    wait = retry_after_seconds(seconds)
    assert wait is not None and wait >= max(1.0, seconds)


@settings(max_examples=100, deadline=None)
@given(
    remaining=st.integers(-5, 10**6),
    reset=st.floats(0, 1e6, allow_nan=False),
    retry=st.floats(1e-9, 1e6, allow_nan=False),
    name=st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=40),
)
def test_fields_always_parse(remaining: int, reset: float, retry: float, name: str) -> None:
    builder = RateLimitHeaders(name, 7, 3.0, "ietf")
    for decision in (Decision(True, 7, remaining, 0.0, reset), refused(retry, reset)):
        values = dict(builder.text(decision))
        policy = parse_sf_list(values["RateLimit-Policy"])
        limit = parse_sf_list(values["RateLimit"])
        assert policy.keys() == limit.keys()
        (params,) = limit.values()
        assert isinstance(params["r"], int) and params["r"] >= 0
        assert isinstance(params["t"], int) and params["t"] >= 0


def test_problem_bodies() -> None:
    body = json.loads(rate_limited_body("api"))
    assert body["type"] == "https://iana.org/assignments/http-problem-types#quota-exceeded"
    assert (body["status"], body["policy"], body["violated-policies"]) == (429, "api", ["api"])
    assert body["title"] and "api" in body["detail"]
    assert (
        "never" not in body["detail"]
        and "more than" in json.loads(rate_limited_body("api", never=True))["detail"]
    )
    for builder in (overloaded_body, circuit_open_body):
        document = json.loads(builder("db"))
        assert document["status"] == 503
        assert document["type"].endswith("#temporary-reduced-capacity")
        assert document["policy"] == "db"
