"""uvicorn's own proxy handling and ``client_ip``: two layers, one effective trust (real uvicorn).

uvicorn (``--proxy-headers``, on by default) rewrites ``scope["client"]`` from
``X-Forwarded-For`` when the peer is in ``--forwarded-allow-ips`` (default
``127.0.0.1,::1``) *before* any middleware runs; ``client_ip`` then starts
from the rewritten address.  These tests send real requests from 127.0.0.1
(the "proxy") and record the key the middleware computed, for each way of
configuring the two layers that docs/web.md describes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from resilience import GCRA, RateLimiter
from resilience.asgi import RateLimitMiddleware, client_ip
from resilience.web.request_keys import HeaderLookup, RequestKey
from tests.integration.servers import serve_asgi


class Recording(RequestKey):
    """The wrapped extractor, remembering every key it returned."""

    def __init__(self, inner: RequestKey) -> None:
        self.inner = inner
        self.keys: list[str] = []

    def from_scope(self, scope: Mapping[str, Any]) -> str:
        key = self.inner.from_scope(scope)
        self.keys.append(key)
        return key

    def from_request(self, request: object, peer: str | None, headers: HeaderLookup) -> str:
        raise NotImplementedError


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def keys_for(
    key: RequestKey, headers: list[dict[str, str]], **uvicorn_options: Any
) -> list[str]:
    """Serve through uvicorn with these options; send one request per header set from 127.0.0.1."""
    recording = Recording(key)
    limiter = RateLimiter(GCRA(1000, 60.0), name="proxy-test")
    app = RateLimitMiddleware(Starlette(routes=[Route("/", hello)]), limiter, key=recording)
    async with (
        serve_asgi(app, **uvicorn_options) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        for sent in headers:
            assert (await http.get("/", headers=sent)).status_code == 200
    return recording.keys


SPOOFED = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}  # the client wrote 6.6.6.6 itself
FORWARDED = {"Forwarded": "for=6.6.6.6, for=203.0.113.9"}
NO_HEADER: dict[str, str] = {}


async def test_uvicorn_defaults_rewrite_the_peer_before_client_ip_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Out of the box uvicorn trusts 127.0.0.1: ``client_ip()`` (trusting nobody) gets its pick."""
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    keys = await keys_for(
        client_ip(), [{"X-Forwarded-For": "198.51.100.1"}, NO_HEADER], proxy_headers=True
    )
    # Anything on the host that connects to uvicorn directly chooses its own key.
    assert keys == ["198.51.100.1", "127.0.0.1"]


async def test_trust_in_uvicorn_only() -> None:
    """``--forwarded-allow-ips=<proxies>`` and ``client_ip()``: uvicorn walks right to left."""
    keys = await keys_for(
        client_ip(),
        [SPOOFED, FORWARDED, NO_HEADER],
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
    )
    # uvicorn reads X-Forwarded-For only: a proxy that writes Forwarded is not understood.
    assert keys == ["203.0.113.9", "127.0.0.1", "127.0.0.1"]


async def test_trust_in_client_ip_only() -> None:
    """``--no-proxy-headers`` and ``client_ip(trusted_proxies=...)``: both headers understood."""
    keys = await keys_for(
        client_ip(trusted_proxies=["127.0.0.1"]),
        [SPOOFED, FORWARDED, NO_HEADER],
        proxy_headers=False,
    )
    assert keys == ["203.0.113.9", "203.0.113.9", "127.0.0.1"]


async def test_uvicorn_trusting_everyone_defeats_a_correct_client_ip() -> None:
    """``--forwarded-allow-ips="*"`` takes the leftmost (client-written) address: too late."""
    keys = await keys_for(
        client_ip(trusted_proxies=["127.0.0.1"]),
        [SPOOFED],
        proxy_headers=True,
        forwarded_allow_ips="*",
    )
    assert keys == ["6.6.6.6"]
