"""ASGI plumbing shared by the middlewares: types, the problem response, send wrappers.

The types are written out here rather than imported from Starlette so that
``resilience.asgi`` works under any ASGI framework (or none) with no
dependency; they match Starlette's and Litestar's shapes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from resilience.web.problem import CONTENT_TYPE

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "StatusRecorder",
    "HeaderInjector",
    "send_problem",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_CONTENT_TYPE = (b"content-type", CONTENT_TYPE.encode("ascii"))
START = "http.response.start"


async def send_problem(
    send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> None:
    """Answer the request ourselves: status, our headers, a problem+json body."""
    await send(
        {
            "type": START,
            "status": status,
            "headers": [_CONTENT_TYPE, (b"content-length", b"%d" % len(body)), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class StatusRecorder:
    """Per-request state of a middleware that needs the response status (breaker, refunds).

    Passes every message through unchanged, noting the status on
    ``http.response.start``; body chunks are forwarded as they come, so
    streaming responses stay streaming.
    """

    __slots__ = ("_send", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 0

    async def send(self, message: Message) -> None:
        if message["type"] == START:
            self.status = message["status"]
        await self._send(message)


class HeaderInjector(StatusRecorder):
    """A ``StatusRecorder`` that also appends headers to the response start."""

    __slots__ = ("_headers",)

    def __init__(self, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        self._send = send
        self.status = 0
        self._headers = headers

    async def send(self, message: Message) -> None:
        if message["type"] == START:
            self.status = message["status"]
            message["headers"] = [*message.get("headers", ()), *self._headers]
        await self._send(message)
