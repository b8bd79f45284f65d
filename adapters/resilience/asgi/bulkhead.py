"""``BulkheadMiddleware``: load shedding.  A full bulkhead answers 503 with ``Retry-After``.

Refusing at once is the point: under overload a server that queues without
bound answers everyone late, while one that sheds the excess keeps serving
what it admitted at normal latency.  Only HTTP scopes take a slot; lifespan
and websocket scopes pass through (a websocket would hold a slot for its
whole life).
"""

from __future__ import annotations

from collections.abc import Callable

from resilience.asgi._asgi import ASGIApp, Receive, Scope, Send, send_problem
from resilience.bulkhead import Bulkhead
from resilience.errors import BulkheadFull
from resilience.web.headers import retry_after_seconds
from resilience.web.problem import overloaded_body
from resilience.web.rules import check_exempt

__all__ = ["BulkheadMiddleware"]


class _Call:
    """One request's run inside the bulkhead; ``started`` tells our refusal from the app's own."""

    __slots__ = ("app", "receive", "scope", "send", "started")

    def __init__(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        self.app = app
        self.scope = scope
        self.receive = receive
        self.send = send
        self.started = False

    async def run(self) -> None:
        self.started = True
        await self.app(self.scope, self.receive, self.send)


class BulkheadMiddleware:
    """Run at most ``bulkhead.max_concurrent`` requests at once (plus its queue); 503 the rest.

    ``retry_after``: the ``Retry-After`` seconds to send when the bulkhead
    gives none (a bulkhead cannot know when a slot frees; about one typical
    request duration is a fair hint).  ``exempt``: ``callable(scope) -> bool``.
    """

    __slots__ = ("_body", "_retry_after", "app", "bulkhead", "exempt")

    def __init__(
        self,
        app: ASGIApp,
        bulkhead: Bulkhead,
        *,
        retry_after: float = 1.0,
        exempt: Callable[[Scope], bool] | None = None,
    ) -> None:
        if not callable(app):
            raise ValueError(f"app must be an ASGI application, got {app!r}")
        if not isinstance(bulkhead, Bulkhead):
            raise ValueError(f"bulkhead must be a Bulkhead, got {bulkhead!r}")
        seconds = retry_after_seconds(retry_after) if isinstance(retry_after, int | float) else None
        if isinstance(retry_after, bool) or seconds is None or retry_after < 0:
            raise ValueError(f"retry_after must be a finite number of seconds, got {retry_after!r}")
        self.app = app
        self.bulkhead = bulkhead
        self._retry_after = float(retry_after)
        self._body = overloaded_body(bulkhead.name)
        self.exempt = check_exempt(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exempt is not None and self.exempt(scope)):
            await self.app(scope, receive, send)
            return
        call = _Call(self.app, scope, receive, send)
        try:
            await self.bulkhead.acall(call.run)
        except BulkheadFull as exc:
            if call.started:  # raised inside the app by a bulkhead of its own
                raise
            seconds = retry_after_seconds(exc.retry_after or self._retry_after) or 1
            await send_problem(send, 503, self._body, [(b"retry-after", b"%d" % seconds)])

    def __repr__(self) -> str:
        return f"BulkheadMiddleware({self.app!r}, {self.bulkhead!r})"
