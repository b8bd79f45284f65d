"""``log_context_middleware``: bind request id and principal in structlog contextvars (opt-in)."""

from __future__ import annotations

from collections.abc import Callable

from structlog.contextvars import bound_contextvars

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from resilience.web.logcontext import LogContext

__all__ = ["log_context_middleware"]


def log_context_middleware(
    *,
    header: str = "X-Request-ID",
    principal: Callable[[web.Request], object] | None = None,
    hash_principal: bool = True,
    hash_key: bytes | str | None = None,
) -> Middleware:
    """Bind ``request_id`` (and a hashed ``principal``) for every log line of a request.

    Put it first in ``middlewares=[...]`` so the other middlewares' events are
    logged inside the context.  See :mod:`resilience.web.logcontext`.
    """
    context: LogContext[web.Request] = LogContext(
        header=header, principal=principal, hash_principal=hash_principal, hash_key=hash_key
    )

    @web.middleware
    async def log_context(request: web.Request, handler: Handler) -> web.StreamResponse:
        values = request.headers.getall(context.header, [])
        fields = context.fields(request, values[0] if len(values) == 1 else None)
        with bound_contextvars(**fields):
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # raised responses carry the id too
                exc.headers.setdefault(header, fields["request_id"])
                raise
        if not response.prepared:
            response.headers.setdefault(header, fields["request_id"])
        return response

    return log_context
