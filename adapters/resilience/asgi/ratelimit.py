"""``RateLimitMiddleware``: pure ASGI rate limiting with 429, Retry-After and RateLimit headers.

Pure ASGI (no ``BaseHTTPMiddleware``): the request and response bodies are
never buffered or copied, streaming works, and the allowed path costs one
key lookup, one ``atry_acquire`` and one header append.  Only HTTP scopes are
limited; ``lifespan`` and ``websocket`` scopes go to the app untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable

from resilience.asgi._asgi import (
    START,
    ASGIApp,
    HeaderInjector,
    Message,
    Receive,
    Scope,
    Send,
    StatusRecorder,
    send_problem,
)
from resilience.ratelimit.decision import Decision, StoreFullDecision
from resilience.ratelimit.limiter import RateLimiter
from resilience.web.headers import HeaderStyle, retry_after_seconds
from resilience.web.plans import PlanLimits, PlanTables
from resilience.web.problem import bad_request_body
from resilience.web.request_keys import DEFAULT_KEY, RequestKey
from resilience.web.rules import Cost, Route, RouteTable, Rule, check_exempt, check_statuses

__all__ = ["RateLimitMiddleware"]


class RateLimitMiddleware:
    """Limit HTTP requests per key; refuse the excess with 429 and an honest ``Retry-After``.

    ``key``: ``client_ip(...)`` (default: the peer address), ``header(name)``,
    ``key_from(fn)`` or any ``callable(scope) -> str | None``; a missing or
    malformed value falls back to the client address.  ``cost``: a number
    or ``callable(scope) -> number``.  ``headers``: ``"ietf"``
    (``RateLimit-Policy`` + ``RateLimit``), ``"legacy"`` (``X-RateLimit-*``),
    ``"both"`` or ``None``, sent on every limited response, 429s included.
    ``exempt``: ``callable(scope) -> bool``; ``True`` skips limiting.
    ``rules``: per-route :class:`~resilience.web.Rule` list, first match wins.
    ``limiter`` may be a :class:`~resilience.web.PlanLimits`: the limiter is
    then picked per request (per plan), with the rules applied within each plan.
    ``refund_statuses``: responses with these statuses give their cost back
    (e.g. ``{401, 403}``): the request is counted on arrival, so a client at
    its limit is refused even if it would have got a 401, and refunded when
    the app answers with one of these statuses (needs a refundable
    algorithm: TokenBucket, GCRA or LeakyBucket).
    """

    __slots__ = ("_default", "_plans", "_refund", "_simple", "_table", "app", "exempt")

    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter | PlanLimits,
        key: RequestKey | Callable[[Scope], object] = DEFAULT_KEY,
        cost: Cost = 1,
        headers: HeaderStyle = "ietf",
        exempt: Callable[[Scope], bool] | None = None,
        *,
        rules: Iterable[Rule] = (),
        refund_statuses: Collection[int] = (),
    ) -> None:
        if not callable(app):
            raise ValueError(f"app must be an ASGI application, got {app!r}")
        self.app = app
        self._refund = check_statuses(refund_statuses, "refund_statuses")
        rules = tuple(rules) if not isinstance(rules, Rule) else rules
        self._plans: PlanTables[RouteTable] | None = None
        if isinstance(limiter, PlanLimits):
            self._plans = limiter.compile(
                lambda lim: RouteTable(lim, key, cost, headers, rules, refund_statuses=self._refund)
            )
            limiter = limiter.limiters[limiter.default]
        table = RouteTable(limiter, key, cost, headers, rules, refund_statuses=self._refund)
        self._table = table if table.has_rules else None
        self._default = table.default
        self.exempt = check_exempt(exempt)
        default = table.default
        self._simple: Route | None = (
            default
            if self._plans is None
            and self._table is None
            and not self._refund
            and default.cost_fn is None
            and default.decide_now is not None
            else None
        )
        """The default route when it is the only one, with a fixed cost and an in-process
        limiter: then a request takes the short path (no rules, plans or awaits)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exempt = self.exempt
        if exempt is not None and exempt(scope):
            await self.app(scope, receive, send)
            return
        route = self._simple
        if route is not None:  # one route, a fixed cost, decided in process: the short path
            try:
                if route.peer_only:  # client_ip() without proxies: an IPv4 peer is the key
                    client = scope.get("client")
                    key = client[0] if client else None
                    if key.__class__ is not str or not key or ":" in key:
                        key = route.key_scope(scope)  # IPv6, a unix socket, no peer
                else:
                    key = route.key_scope(scope)
                cost = route.cost
                decision = route.decide_now(key, cost)  # type: ignore[misc]
            except ValueError as exc:  # InvalidKey: a 400, not a 500
                await send_problem(send, 400, bad_request_body(route.limiter.name, str(exc)), [])
                return
        else:
            table = self._table
            if self._plans is not None:
                try:
                    table = self._plans.pick(scope)
                except ValueError as exc:  # the plan function refused the request: a 400
                    await send_problem(send, 400, bad_request_body("plan", str(exc)), [])
                    return
            route = (
                self._default if table is None else table.resolve(scope["method"], scope["path"])
            )
            if route is None:
                await self.app(scope, receive, send)
                return
            try:
                key = route.key_scope(scope)
                cost_fn = route.cost_fn
                cost = route.cost if cost_fn is None else cost_fn(scope)
                decide_now = route.decide_now
                decision = (
                    decide_now(key, cost)
                    if decide_now is not None
                    else await route.limiter.atry_acquire(key, cost)
                )
            except ValueError as exc:  # InvalidKey, or a cost function's bad answer: a 400
                await send_problem(send, 400, bad_request_body(route.limiter.name, str(exc)), [])
                return
        if not decision[0]:
            await _refuse(send, route, decision)
            return
        if decision.delay:
            await route.limiter.await_delay(key, cost, decision.delay)
        headers = route.headers
        if not self._refund:
            if headers is None:
                await self.app(scope, receive, send)
                return
            extra = headers.asgi(decision)

            def send_with_headers(message: Message) -> Awaitable[None]:
                # A plain function handing back send's awaitable: no coroutine of its own per
                # message; and a closure, not a HeaderInjector: no __init__ frame either.
                if message["type"] == START:
                    message["headers"] = [*message.get("headers", ()), *extra]
                return send(message)

            await self.app(scope, receive, send_with_headers)
            return
        recorder = (
            StatusRecorder(send)
            if headers is None
            else HeaderInjector(send, headers.asgi(decision))
        )
        await self.app(scope, receive, recorder.send)
        if recorder.status in self._refund:
            route.limiter.refund(key, cost)

    def __repr__(self) -> str:
        return f"RateLimitMiddleware({self.app!r}, {self._default.limiter!r})"


async def _refuse(send: Send, route: Route, decision: Decision) -> None:
    seconds = retry_after_seconds(decision[3])
    if decision.__class__ is StoreFullDecision:  # server capacity, not the client's quota
        await send_problem(send, 503, route.full_body, [(b"retry-after", b"%d" % (seconds or 1))])
        return
    headers = [] if route.headers is None else route.headers.asgi(decision)
    if seconds is None:
        await send_problem(send, 429, route.never_body, headers)
        return
    headers.append((b"retry-after", b"%d" % seconds))
    await send_problem(send, 429, route.body, headers)
