"""``ValetKeyApp(cc)``: a pure ASGI app serving ``GET /{token}`` from a claim check.

Mount it anywhere (``Mount("/files", app=ValetKeyApp(cc))`` in Starlette, or
as the whole app under uvicorn).  The payload is streamed chunk by chunk from
the store; ``Range`` gives 206 (one range), an unsatisfiable one 416; a bad
or expired token 403 and a released payload 404, both problem+json.  A
payload whose bytes no longer match its digest is cut off mid-stream (the
connection is closed, so the client never mistakes it for complete).
"""

from __future__ import annotations

import asyncio

from resilience.asgi._asgi import Receive, Scope, Send
from resilience.claimcheck.claimcheck import ClaimCheck
from resilience.claimcheck.valet import check_present, plan, problem_body, stream_or_missing

__all__ = ["ValetKeyApp"]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class ValetKeyApp:
    """Serve payloads to holders of ``cc.grant(...)`` tokens."""

    __slots__ = ("cc",)

    def __init__(self, cc: ClaimCheck) -> None:
        if not isinstance(cc, ClaimCheck):
            raise TypeError(f"ValetKeyApp needs a ClaimCheck, got {cc!r}")
        self.cc = cc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            raise RuntimeError(f"ValetKeyApp serves HTTP only, not {scope['type']!r}")
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        token = path[1:] if path.startswith("/") else path
        if not token or "/" in token:
            body = problem_body(404, "Not Found", "expected GET /{token}")
            await _send(send, 404, [("content-type", "application/problem+json"),
                                    ("content-length", str(len(body)))], body)  # fmt: skip
            return
        valet = plan(
            self.cc,
            token,
            scope.get("method", "GET"),
            _header(scope, b"range"),
            _header(scope, b"if-range"),
            _header(scope, b"if-none-match"),
        )
        if valet.body is not None:
            await _send(send, valet.status, valet.headers, valet.body)
            return
        head = scope.get("method") == "HEAD"
        if head:
            valet = await check_present(self.cc, valet)
            await _send(send, valet.status, valet.headers, b"")
            return
        valet, stream, first = await stream_or_missing(self.cc, valet)
        if stream is None:
            await _send(send, valet.status, valet.headers, valet.body or b"")
            return
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in valet.headers]
        await send({"type": "http.response.start", "status": valet.status, "headers": headers})
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone))
        try:
            chunk = first
            while chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await asyncio.sleep(0)  # let the watcher see a disconnect between chunks
                if gone.is_set():
                    return  # the client hung up: stop reading the store
                chunk = await anext(stream, b"")
        finally:
            watcher.cancel()
            await stream.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def __repr__(self) -> str:
        return f"ValetKeyApp({self.cc!r})"


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    """Set ``gone`` on ``http.disconnect``: servers such as uvicorn drop the body of a
    ``send`` after the client left instead of raising, so without this the whole
    payload would still be read from the store for nobody."""
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
    except Exception:  # a server whose receive() fails once the client is gone
        pass
    gone.set()


async def _send(send: Send, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
