"""``LogContextMiddleware``: bind request id and principal in structlog contextvars (opt-in)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from structlog.contextvars import bound_contextvars

from resilience.asgi._asgi import ASGIApp, Receive, Scope, Send
from resilience.web.logcontext import LogContext

__all__ = ["LogContextMiddleware"]


class LogContextMiddleware:
    """Bind ``request_id`` (and a hashed ``principal``) for every log line of a request.

    Add it outermost, so the rate limiter's and breaker's events are logged
    inside the context.  The request id comes from ``header`` when the client
    sent a usable one, else is generated, and is echoed on the response.
    See :mod:`resilience.web.logcontext`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        header: str = "X-Request-ID",
        principal: Callable[[Scope], object] | None = None,
        hash_principal: bool = True,
        hash_key: bytes | str | None = None,
    ) -> None:
        if not callable(app):
            raise ValueError(f"app must be an ASGI application, got {app!r}")
        self.app = app
        self.context: LogContext[Scope] = LogContext(
            header=header, principal=principal, hash_principal=hash_principal, hash_key=hash_key
        )
        self._bname = self.context.header.encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        raw = None
        for name, value in scope.get("headers", ()):
            if name == self._bname:
                if raw is not None:  # repeated: which one? generate our own
                    raw = None
                    break
                raw = value.decode("latin-1")
        fields = self.context.fields(scope, raw)
        echo = (self._bname, fields["request_id"].encode("latin-1"))

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == echo[0] for name, _ in headers):
                    headers.append(echo)
                message = {**message, "headers": headers}
            await send(message)

        with bound_contextvars(**fields):
            await self.app(scope, receive, send_with_id)
