"""aiohttp plumbing shared by the middlewares: problem responses, header lookups, websockets."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from resilience.web.problem import CONTENT_TYPE
from resilience.web.request_keys import HeaderLookup

__all__ = ["NO_HEADERS", "header_lookup", "problem_response"]


def problem_response(status: int, body: bytes, headers: Sequence[tuple[str, str]]) -> web.Response:
    """Our own answer: status, headers and a problem+json body."""
    return web.Response(status=status, body=body, content_type=CONTENT_TYPE, headers=list(headers))


def header_lookup(request: web.Request) -> HeaderLookup:
    """``lookup(name)`` -> every value of a header, for the key extractors."""
    getall = request.headers.getall

    def lookup(name: str) -> Sequence[str]:
        return getall(name, ())

    return lookup


def _no_headers(name: str) -> Sequence[str]:
    return ()


NO_HEADERS: HeaderLookup = _no_headers
"""The lookup handed to a key that never reads headers (saves building one per request)."""
