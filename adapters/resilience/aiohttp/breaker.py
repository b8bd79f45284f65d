"""``circuit_breaker_middleware``: fail fast with 503 while the app's circuit is open (aiohttp).

As in ASGI: a 5xx response, a ``web.HTTPException`` with a 5xx status or any
other exception escaping the handler is a failure; a cancelled handler
(client gone) counts as nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from resilience.aiohttp._common import problem_response
from resilience.breaker import CircuitBreaker
from resilience.web.headers import retry_after_seconds
from resilience.web.problem import circuit_open_body
from resilience.web.readiness import require_async_breaker
from resilience.web.rules import check_exempt, check_statuses

__all__ = ["circuit_breaker_middleware"]


def circuit_breaker_middleware(
    breaker: CircuitBreaker,
    *,
    failure_statuses: Collection[int] = range(500, 600),
    exempt: Callable[[web.Request], bool] | None = None,
) -> Middleware:
    """Count 5xx responses and exceptions in ``breaker``; answer 503 at once while it is open."""
    if not isinstance(breaker, CircuitBreaker):
        raise ValueError(f"breaker must be a CircuitBreaker, got {breaker!r}")
    require_async_breaker(breaker)
    failures = check_statuses(failure_statuses, "failure_statuses")
    skip = check_exempt(exempt)
    body = circuit_open_body(breaker.name)

    @web.middleware
    async def circuit_breaker(request: web.Request, handler: Handler) -> web.StreamResponse:
        if skip is not None and skip(request):
            return await handler(request)
        # The guard times the request and classifies an escaping exception
        # (record/ignore decide; a cancelled probe fails, a cancelled closed call counts nothing).
        async with breaker.aguard(refuse=False) as guard:
            if not guard.allowed:
                seconds = retry_after_seconds(guard.permit.retry_after) or 1
                return problem_response(503, body, [("Retry-After", str(seconds))])
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # judged by its status, like a response
                if exc.status in failures:
                    guard.fail()
                else:
                    guard.succeed()
                raise
            if response.status in failures:
                guard.fail()
            return response

    return circuit_breaker
