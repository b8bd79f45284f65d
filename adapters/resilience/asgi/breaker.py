"""``CircuitBreakerMiddleware``: fail fast with 503 while the app's circuit is open.

Outcomes are judged on what the client got: a 5xx response (or an
exception escaping the app) is a failure, anything else a success.  This
uses the breaker's guard (``aguard``), which takes the permit, times the
request and reports it, so the breaker's own ``failure_if`` is not needed and a
streamed response is judged by its status as soon as it finishes.  A
request cancelled by a client disconnect counts as nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from resilience.asgi._asgi import ASGIApp, Receive, Scope, Send, StatusRecorder, send_problem
from resilience.breaker import CircuitBreaker
from resilience.web.headers import retry_after_seconds
from resilience.web.problem import circuit_open_body
from resilience.web.readiness import require_async_breaker
from resilience.web.rules import check_exempt, check_statuses

__all__ = ["CircuitBreakerMiddleware"]

SERVER_ERRORS = range(500, 600)


class CircuitBreakerMiddleware:
    """Count the app's 5xx responses and exceptions in ``breaker``; 503 at once while open.

    ``failure_statuses``: the statuses that count as failures (default every
    5xx).  ``exempt``: ``callable(scope) -> bool`` for requests the breaker
    neither guards nor counts (health checks).
    """

    __slots__ = ("_body", "_failures", "app", "breaker", "exempt")

    def __init__(
        self,
        app: ASGIApp,
        breaker: CircuitBreaker,
        *,
        failure_statuses: Collection[int] = SERVER_ERRORS,
        exempt: Callable[[Scope], bool] | None = None,
    ) -> None:
        if not callable(app):
            raise ValueError(f"app must be an ASGI application, got {app!r}")
        if not isinstance(breaker, CircuitBreaker):
            raise ValueError(f"breaker must be a CircuitBreaker, got {breaker!r}")
        require_async_breaker(breaker)
        self.app = app
        self.breaker = breaker
        self._failures = check_statuses(failure_statuses, "failure_statuses")
        self._body = circuit_open_body(breaker.name)
        self.exempt = check_exempt(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exempt is not None and self.exempt(scope)):
            await self.app(scope, receive, send)
            return
        # The guard times the request and classifies an escaping exception
        # (record/ignore decide; a cancelled probe fails, a cancelled closed call counts nothing).
        async with self.breaker.aguard(refuse=False) as guard:
            if not guard.allowed:
                seconds = retry_after_seconds(guard.permit.retry_after) or 1
                await send_problem(send, 503, self._body, [(b"retry-after", b"%d" % seconds)])
                return
            recorder = StatusRecorder(send)
            await self.app(scope, receive, recorder.send)
            if recorder.status in self._failures or not recorder.status:
                guard.fail()

    def __repr__(self) -> str:
        return f"CircuitBreakerMiddleware({self.app!r}, {self.breaker!r})"
