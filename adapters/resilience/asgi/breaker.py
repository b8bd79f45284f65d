"""``CircuitBreakerMiddleware``: fail fast with 503 while the app's circuit is open.

Outcomes are judged on what the client got: a 5xx response (or an
exception escaping the app) is a failure, anything else a success.  This
uses the breaker's permit API directly (permit, then ``on_success`` /
``on_failure``), so the breaker's own ``failure_if`` is not needed and a
streamed response is judged by its status as soon as it finishes.  A
request cancelled by a client disconnect counts as nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from resilience.asgi._asgi import ASGIApp, Receive, Scope, Send, StatusRecorder, send_problem
from resilience.breaker import CircuitBreaker
from resilience.clock import now_function
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

    __slots__ = ("_body", "_failures", "_now", "_timed", "app", "breaker", "exempt")

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
        self._now = now_function(breaker.clock)
        self._timed = breaker.config.slow_call_duration is not None
        self._body = circuit_open_body(breaker.name)
        self.exempt = check_exempt(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exempt is not None and self.exempt(scope)):
            await self.app(scope, receive, send)
            return
        breaker = self.breaker
        permit = await breaker.apermit()
        if not permit.allowed:
            seconds = retry_after_seconds(permit.retry_after) or 1
            await send_problem(send, 503, self._body, [(b"retry-after", b"%d" % seconds)])
            return
        start = self._now() if self._timed else 0.0
        recorder = StatusRecorder(send)
        try:
            await self.app(scope, receive, recorder.send)
        except BaseException as exc:  # record/ignore decide; a cancelled probe fails
            await breaker.aon_error(permit, exc, start if self._timed else self._now())
            raise
        if recorder.status in self._failures or not recorder.status:
            await breaker.aon_failure(permit, self._elapsed(start))
        else:
            await breaker.aon_success(permit, self._elapsed(start))

    def _elapsed(self, start: float) -> float:
        return self._now() - start if self._timed else 0.0

    def __repr__(self) -> str:
        return f"CircuitBreakerMiddleware({self.app!r}, {self.breaker!r})"
