"""What a valet-key endpoint answers, independent of the web framework.

``resilience.asgi.ValetKeyApp`` and ``resilience.aiohttp.valet_key_handler``
both call :func:`plan` with the token and request headers and get back a
status, headers and either a small problem body or a byte range to stream
(:meth:`ClaimCheck.astream`).  Ranges follow RFC 9110 section 14: one
``bytes=`` range (``a-b``, ``a-``, ``-n``) gives 206 with ``Content-Range``;
a range that starts past the end gives 416 with ``Content-Range: bytes */size``;
a syntactically invalid or multi-part ``Range`` is ignored (200, the whole
payload), as is a ``Range`` whose ``If-Range`` does not match the ETag.
The ETag is the payload's SHA-256 digest: it never changes for a given id.
``If-None-Match`` naming it (or ``*``) gives 304 (RFC 9110 13.1.2), evaluated
before ``Range`` as section 13.2.2 orders.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from resilience.claimcheck.claimcheck import ClaimCheck, ValetGrant
from resilience.claimcheck.errors import PayloadMissing, TicketExpired, TicketInvalid

__all__ = [
    "ValetPlan",
    "check_present",
    "missing",
    "parse_range",
    "plan",
    "problem_body",
    "stream_or_missing",
]

PROBLEM = "application/problem+json"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class Unsatisfiable(Exception):
    """The requested range starts at or past the end of the payload."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end_exclusive)``, ``None`` for the whole payload, or :class:`Unsatisfiable`."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None  # not one bytes range we understand: ignore it (RFC 9110 14.2)
    first, last = match.groups()
    if len(first) > 19 or len(last) > 19:
        return None
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - suffix), size
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise Unsatisfiable
    end = size if not last else min(int(last) + 1, size)
    return start, end


def _none_match(header: str, etag: str) -> bool:
    """``If-None-Match`` names ``etag`` (weak comparison, RFC 9110 8.8.3.2) or is ``*``."""
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def problem_body(status: int, title: str, detail: str) -> bytes:
    """An RFC 9457 problem document."""
    doc = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


@dataclass(slots=True)
class ValetPlan:
    """The response to send: ``body`` if set, else stream ``[start, end)`` of ``grant``."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    grant: ValetGrant | None = None
    start: int = 0
    end: int = 0


def _problem(status: int, title: str, detail: str, *extra: tuple[str, str]) -> ValetPlan:
    body = problem_body(status, title, detail)
    headers = [("content-type", PROBLEM), ("content-length", str(len(body))), *extra]
    return ValetPlan(status, headers, body)


def plan(
    cc: ClaimCheck,
    token: str,
    method: str,
    range_header: str | None = None,
    if_range: str | None = None,
    if_none_match: str | None = None,
) -> ValetPlan:
    """Check the token and the request; decide status, headers and what to stream."""
    if method not in ("GET", "HEAD"):
        return _problem(
            405, "Method Not Allowed", "a valet key is read-only", ("allow", "GET, HEAD")
        )
    try:
        grant = cc.verify_grant(token)
    except TicketExpired:
        return _problem(403, "Forbidden", "the valet key has expired")
    except TicketInvalid:
        return _problem(403, "Forbidden", "the valet key is not valid")
    etag = f'"{grant.digest}"'
    common = [
        ("etag", etag),
        ("accept-ranges", "bytes"),
        ("cache-control", "private, no-store"),
    ]
    if if_none_match is not None and _none_match(if_none_match, etag):
        return ValetPlan(304, common, None, grant, 0, 0)  # nothing to send: start == end
    if if_range is not None and if_range.strip() != etag:
        range_header = None
    try:
        wanted = parse_range(range_header, grant.size)
    except Unsatisfiable:
        return _problem(
            416,
            "Range Not Satisfiable",
            f"the payload has {grant.size} bytes",
            ("content-range", f"bytes */{grant.size}"),
            *common,
        )
    if wanted is None:
        headers = [
            ("content-type", "application/octet-stream"),
            ("content-length", str(grant.size)),
            *common,
        ]
        return ValetPlan(200, headers, None, grant, 0, grant.size)
    start, end = wanted
    headers = [
        ("content-type", "application/octet-stream"),
        ("content-length", str(end - start)),
        ("content-range", f"bytes {start}-{end - 1}/{grant.size}"),
        *common,
    ]
    return ValetPlan(206, headers, None, grant, start, end)


def missing() -> ValetPlan:
    """404 for a genuine token whose payload is gone (released or swept)."""
    return _problem(404, "Not Found", "the payload is no longer stored")


async def stream_or_missing(
    cc: ClaimCheck, valet: ValetPlan
) -> tuple[ValetPlan, AsyncGenerator[bytes, None] | None, bytes]:
    """Open the stream before any header is sent, so a missing payload can still be a 404.

    Returns the plan to send, the rest of the stream and its first chunk.
    """
    if valet.grant is None or valet.start >= valet.end:
        return await check_present(cc, valet), None, b""
    stream = cc.astream(valet.grant, valet.start, valet.end)
    try:
        first = await anext(stream, b"")
    except PayloadMissing:
        await stream.aclose()
        return missing(), None, b""
    return valet, stream, first


async def check_present(cc: ClaimCheck, valet: ValetPlan) -> ValetPlan:
    """The plan, or a 404 if its payload is gone: what HEAD (or an empty body) must answer.

    HEAD is GET without the body (RFC 9110 9.3.2), so it reports a released
    payload as GET would; opening an empty range asks the store without
    reading the payload.
    """
    if valet.grant is None:
        return valet
    stream = cc.astream(valet.grant, 0, 0) if valet.grant.size else cc.astream(valet.grant)
    try:
        await anext(stream, b"")
    except PayloadMissing:
        return missing()
    finally:
        await stream.aclose()
    return valet
