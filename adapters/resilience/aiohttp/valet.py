"""``valet_key_handler(cc)``: an aiohttp handler serving ``GET /{token}`` from a claim check.

    app.router.add_get("/files/{token}", valet_key_handler(cc))

The same responses as ``resilience.asgi.ValetKeyApp``: the payload streamed
from the store, ``Range`` (206 / 416), ETag (the digest), 403 problem+json
for a bad or expired token, 404 for a released payload.  aiohttp answers
``HEAD`` for a GET route itself (``add_get`` registers both).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from resilience.claimcheck.claimcheck import ClaimCheck
from resilience.claimcheck.valet import check_present, plan, stream_or_missing

__all__ = ["valet_key_handler"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def valet_key_handler(cc: ClaimCheck) -> Handler:
    """A request handler; the token is the ``{token}`` route segment (or the last path segment)."""
    if not isinstance(cc, ClaimCheck):
        raise TypeError(f"valet_key_handler needs a ClaimCheck, got {cc!r}")

    async def handle(request: web.Request) -> web.StreamResponse:
        token = request.match_info.get("token") or request.path.rsplit("/", 1)[-1]
        method = "GET" if request.method == "HEAD" else request.method
        headers = request.headers
        valet = plan(
            cc,
            token,
            method,
            headers.get("Range"),
            headers.get("If-Range"),
            headers.get("If-None-Match"),
        )
        stream, first = None, b""
        if valet.body is None and request.method != "HEAD":
            valet, stream, first = await stream_or_missing(cc, valet)
        elif valet.body is None:
            valet = await check_present(cc, valet)
        response = web.StreamResponse(status=valet.status)
        for name, value in valet.headers:
            response.headers[name] = value
        if valet.body is not None or request.method == "HEAD":
            await response.prepare(request)
            if valet.body is not None and request.method != "HEAD":
                await response.write(valet.body)
            await response.write_eof()
            return response
        await response.prepare(request)
        if stream is not None:
            try:
                chunk = first
                while chunk:
                    try:
                        await response.write(chunk)
                    except ConnectionError:  # the client hung up: not a server error
                        return response
                    chunk = await anext(stream, b"")
            finally:
                await stream.aclose()
        await response.write_eof()
        return response

    return handle
