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
from resilience.clock import now_function
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
    now = now_function(breaker.clock)
    timed = breaker.config.slow_call_duration is not None

    @web.middleware
    async def circuit_breaker(request: web.Request, handler: Handler) -> web.StreamResponse:
        if skip is not None and skip(request):
            return await handler(request)
        permit = await breaker.apermit()
        if not permit.allowed:
            seconds = retry_after_seconds(permit.retry_after) or 1
            return problem_response(503, body, [("Retry-After", str(seconds))])
        start = now() if timed else 0.0
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            elapsed = now() - start if timed else 0.0
            if exc.status in failures:
                await breaker.aon_failure(permit, elapsed)
            else:
                await breaker.aon_success(permit, elapsed)
            raise
        except BaseException as exc:  # record/ignore decide; a cancelled probe fails
            await breaker.aon_error(permit, exc, start if timed else now())
            raise
        elapsed = now() - start if timed else 0.0
        if response.status in failures:
            await breaker.aon_failure(permit, elapsed)
        else:
            await breaker.aon_success(permit, elapsed)
        return response

    return circuit_breaker
