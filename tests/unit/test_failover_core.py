"""The failover client's pure pieces: replay eligibility, credentials, origins, options."""

from __future__ import annotations

import io
from typing import Any

import pytest
from multidict import CIMultiDict

from resilience.aiohttp import FailoverClient
from resilience.failover import (
    carries_credentials,
    has_idempotency_key,
    is_replayable_body,
    may_replay,
    parse_origin,
    strip_credentials,
)

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


@pytest.mark.parametrize(
    ("body", "replayable"),
    [
        (None, True),
        (b"x", True),
        ("text", True),
        ({"a": "1", "b": 2}, True),
        ([("a", "1"), ("a", "2")], True),
        (io.BytesIO(b"x"), False),
        (iter([b"x"]), False),
        ({"file": io.BytesIO(b"x")}, False),
        ([b"x", b"y"], False),
    ],
)
def test_replayable_bodies(body: object, replayable: bool) -> None:
    assert is_replayable_body(body) is replayable


def test_async_generators_are_not_replayable() -> None:
    async def gen() -> Any:
        yield b"x"

    agen = gen()
    assert not is_replayable_body(agen)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (None, False),
        ({}, False),
        ({"Idempotency-Key": "k1"}, True),
        ({"idempotency-key": "k1"}, True),
        ({"Idempotency-Key": "  "}, False),
        ([("IDEMPOTENCY-KEY", "k")], True),
        (CIMultiDict({"Idempotency-Key": "k"}), True),
        ({"X-Idempotency-Key": "k"}, False),
    ],
)
def test_idempotency_key_detection(headers: object, expected: bool) -> None:
    assert has_idempotency_key(headers) is expected


def test_may_replay() -> None:
    assert may_replay("GET", SAFE, False, True)
    assert not may_replay("POST", SAFE, False, True)
    assert may_replay("POST", SAFE, True, True)
    assert not may_replay("GET", SAFE, False, False)  # a stream never replays
    assert not may_replay("POST", SAFE, True, False)


def test_strip_credentials_keeps_other_headers_and_repeats() -> None:
    headers = CIMultiDict(
        [
            ("Authorization", "Bearer x"),
            ("X-A", "1"),
            ("cookie", "a=1"),
            ("X-A", "2"),
            ("Proxy-Authorization", "p"),
        ]
    )
    assert strip_credentials(headers) == [("X-A", "1"), ("X-A", "2")]
    assert strip_credentials({"AUTHORIZATION ": "x", "Accept": "*/*"}) == [("Accept", "*/*")]
    assert strip_credentials(None) == []


def test_carries_credentials() -> None:
    assert carries_credentials({"Cookie": "a=1"}, {})
    assert carries_credentials(None, {"auth": object()})
    assert carries_credentials(None, {"cookies": {"a": "1"}})
    assert not carries_credentials({"Accept": "*/*"}, {"cookies": None})


def test_origins() -> None:
    origin = parse_origin("https://API.example.com/v1/", "primary")
    assert origin.key == ("https", "api.example.com", 443)
    assert origin.url("/items") == "https://API.example.com/v1/items"
    assert origin.label == "https://api.example.com:443"
    assert parse_origin("http://[::1]:8080", "secondary").label == "http://[::1]:8080"
    for bad, why in [
        ("ftp://x", "scheme"),
        ("http://", "host"),
        ("http://h/?q=1", "query"),
        ("http://user:pw@h", "credentials"),
        (42, "base URL"),
        ("http://h:99999", "valid"),
    ]:
        with pytest.raises(ValueError, match="primary") as caught:
            parse_origin(bad, "primary")
        assert why in str(caught.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("failover_on", (200, 99)),
        ("failover_on", "503"),
        ("methods", ("GET", 1)),
        ("attempt_timeout", 0),
        ("attempt_timeout", float("nan")),
        ("health_interval", -1),
        ("health_path", "healthz"),
        ("unhealthy_after", 0),
        ("healthy_after", 0),
        ("budget", 3),
        ("hedge_after", 0),
        ("forward_credentials", "yes"),
        ("breakers", (1, 2)),
        ("name", ""),
        ("events", object()),
        ("session", object()),
    ],
)
def test_options_are_validated_naming_the_field(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        FailoverClient("http://127.0.0.1:1", "http://127.0.0.1:2", **{option: value})


def test_same_base_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="different"):
        FailoverClient("http://127.0.0.1:1/", "http://127.0.0.1:1")
