"""``rate_limit_middleware``: the ASGI ``RateLimitMiddleware``, for aiohttp.

Same options, same answers (429, ``Retry-After``, RateLimit headers,
problem+json), and the same core (``resilience.web``).  Keys and ``exempt``
receive the ``aiohttp.web.Request``.  Headers are added to the handler's
response, including one raised as ``web.HTTPException``; a handler that
streams (calls ``prepare()`` itself) sends its headers before the middleware
sees them, so install :func:`rate_limit_headers_hook` on
``app.on_response_prepare`` to put the headers on streamed responses too.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from resilience.aiohttp._common import NO_HEADERS, header_lookup, problem_response
from resilience.ratelimit.decision import Decision, StoreFullDecision
from resilience.ratelimit.limiter import RateLimiter
from resilience.web.headers import HeaderStyle, retry_after_seconds
from resilience.web.plans import PlanLimits
from resilience.web.problem import bad_request_body
from resilience.web.request_keys import DEFAULT_KEY, RequestKey
from resilience.web.rules import Cost, Route, RouteTable, Rule, check_exempt, check_statuses

__all__ = ["rate_limit_headers_hook", "rate_limit_middleware"]

PENDING: Any = (
    web.RequestKey("resilience_rate_limit_headers", list)
    if hasattr(web, "RequestKey")  # aiohttp >= 3.12; plain string keys before
    else "resilience_rate_limit_headers"
)
"""Request key under which admitted requests' headers wait for the response."""


def rate_limit_middleware(
    limiter: RateLimiter | PlanLimits,
    key: RequestKey | Callable[[web.Request], object] = DEFAULT_KEY,
    cost: Cost = 1,
    headers: HeaderStyle = "ietf",
    exempt: Callable[[web.Request], bool] | None = None,
    *,
    rules: Iterable[Rule] = (),
    refund_statuses: Collection[int] = (),
) -> Middleware:
    """An aiohttp middleware limiting requests per key (see ``RateLimitMiddleware``).

    ``limiter`` may be a ``PlanLimits``: its ``plan`` then receives the ``web.Request``.
    """
    refunds = check_statuses(refund_statuses, "refund_statuses")
    rules = tuple(rules) if not isinstance(rules, Rule) else rules
    plans = None
    if isinstance(limiter, PlanLimits):
        plans = limiter.compile(
            lambda lim: RouteTable(lim, key, cost, headers, rules, refund_statuses=refunds)
        )
        limiter = limiter.limiters[limiter.default]
    table = RouteTable(limiter, key, cost, headers, rules, refund_statuses=refunds)
    resolve = table.resolve if table.has_rules else None
    default = table.default
    skip = check_exempt(exempt)
    # One route, a fixed cost, decided in process: requests take the short path.
    simple = (
        plans is None
        and resolve is None
        and default.cost_fn is None
        and default.decide_now is not None
    )

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if skip is not None and skip(request):
            return await handler(request)
        route: Route | None
        if simple:
            route = default
            try:
                if route.peer_only:  # client_ip() without proxies: an IPv4 peer is the key
                    client = request.remote
                    if client.__class__ is not str or not client or ":" in client:
                        client = route.key.from_request(request, client, NO_HEADERS)
                else:
                    client = route.key.from_request(request, request.remote, header_lookup(request))
                cost = route.cost
                decision = route.decide_now(client, cost)  # type: ignore[misc]
            except ValueError as exc:  # InvalidKey: a 400, not a 500
                return problem_response(400, bad_request_body(route.limiter.name, str(exc)), [])
        else:
            if plans is not None:
                try:
                    route = plans.pick(request).resolve(request.method, request.path)
                except ValueError as exc:  # the plan function refused the request: a 400
                    return problem_response(400, bad_request_body("plan", str(exc)), [])
            else:
                route = default if resolve is None else resolve(request.method, request.path)
            if route is None:
                return await handler(request)
            try:
                lookup = NO_HEADERS if route.peer_only else header_lookup(request)
                client = route.key.from_request(request, request.remote, lookup)
                cost = route.cost if route.cost_fn is None else route.cost_fn(request)
                decide_now = route.decide_now
                decision = (
                    decide_now(client, cost)
                    if decide_now is not None
                    else await route.limiter.atry_acquire(client, cost)
                )
            except ValueError as exc:  # InvalidKey, or a cost function's bad answer: a 400
                return problem_response(400, bad_request_body(route.limiter.name, str(exc)), [])
        if not decision[0]:
            return _refusal(route, decision)
        if decision.delay:
            await route.limiter.await_delay(client, cost, decision.delay)
        headers = route.headers
        if headers is None:
            if not refunds:
                return await handler(request)
            pending: list[tuple[str, str]] = []
        else:
            # Kept on the request for rate_limit_headers_hook (streamed responses, aiohttp's
            # own error pages); whoever applies them first empties the list.
            pending = headers.text(decision)
            request[PENDING] = pending
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if pending:
                exc.headers.extend(pending)
                pending.clear()
            if exc.status in refunds:
                route.limiter.refund(client, cost)
            raise
        if pending and not response.prepared:
            response.headers.extend(pending)
            pending.clear()
        if refunds and response.status in refunds:
            route.limiter.refund(client, cost)
        return response

    return rate_limit


def _refusal(route: Route, decision: Decision) -> web.Response:
    seconds = retry_after_seconds(decision[3])
    if decision.__class__ is StoreFullDecision:  # server capacity, not the client's quota
        return problem_response(503, route.full_body, [("Retry-After", str(seconds or 1))])
    headers = [] if route.headers is None else route.headers.text(decision)
    if seconds is None:
        return problem_response(429, route.never_body, headers)
    headers.append(("Retry-After", str(seconds)))
    return problem_response(429, route.body, headers)


async def rate_limit_headers_hook(request: web.Request, response: web.StreamResponse) -> None:
    """For ``app.on_response_prepare``: puts the headers on every response aiohttp prepares.

    That includes responses a handler streams itself and the 500 aiohttp
    makes for an exception that escaped the handler (it builds that response
    after every middleware has returned, so only this signal reaches it).
    """
    pending: list[tuple[str, str]] | None = request.get(PENDING)
    if pending:
        response.headers.extend(pending)
        pending.clear()
