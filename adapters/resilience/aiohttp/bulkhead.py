"""``bulkhead_middleware``: load shedding for aiohttp; a full bulkhead answers 503."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from resilience.aiohttp._common import problem_response
from resilience.bulkhead import Bulkhead
from resilience.errors import BulkheadFull
from resilience.web.headers import retry_after_seconds
from resilience.web.problem import overloaded_body
from resilience.web.rules import check_exempt

__all__ = ["bulkhead_middleware"]


def bulkhead_middleware(
    bulkhead: Bulkhead,
    *,
    retry_after: float = 1.0,
    exempt: Callable[[web.Request], bool] | None = None,
) -> Middleware:
    """Run at most ``bulkhead.max_concurrent`` handlers at once (plus its queue); 503 the rest.

    Websocket handshakes pass through (a websocket would hold a slot for its
    whole life).  ``retry_after``: the hint sent when the bulkhead gives none.
    """
    if not isinstance(bulkhead, Bulkhead):
        raise ValueError(f"bulkhead must be a Bulkhead, got {bulkhead!r}")
    if (
        isinstance(retry_after, bool)
        or not isinstance(retry_after, int | float)
        or retry_after_seconds(retry_after) is None
        or retry_after < 0
    ):
        raise ValueError(f"retry_after must be a finite number of seconds, got {retry_after!r}")
    body = overloaded_body(bulkhead.name)
    skip = check_exempt(exempt)
    default_wait = float(retry_after)

    @web.middleware
    async def bulkhead_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if skip is not None and skip(request):
            return await handler(request)
        started = False

        async def run() -> web.StreamResponse:
            nonlocal started
            started = True
            return await handler(request)

        try:
            return await bulkhead.acall(run)
        except BulkheadFull as exc:
            if started:  # raised inside the handler by a bulkhead of its own
                raise
            seconds = retry_after_seconds(exc.retry_after or default_wait) or 1
            return problem_response(503, body, [("Retry-After", str(seconds))])

    return bulkhead_guard
