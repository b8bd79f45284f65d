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

from collections.abc import Callable, Collection, Iterable, MutableMapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from resilience.aiohttp._common import header_lookup, problem_response
from resilience.ratelimit.decision import Decision
from resilience.ratelimit.limiter import RateLimiter
from resilience.web.headers import HeaderStyle, retry_after_seconds
from resilience.web.keys import DEFAULT_KEY, RequestKey
from resilience.web.limiting import refund, shape
from resilience.web.plans import PlanLimits
from resilience.web.problem import bad_request_body
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

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if skip is not None and skip(request):
            return await handler(request)
        if plans is not None:
            try:
                route = plans.pick(request).resolve(request.method, request.path)
            except ValueError as exc:  # the plan function refused the request: a 400
                return problem_response(400, bad_request_body("plan", str(exc)), [])
        else:
            route = default if resolve is None else resolve(request.method, request.path)
        if route is None:
            return await handler(request)
        lim = route.limiter
        try:
            client = route.key.from_request(request, request.remote, header_lookup(request))
            cost = route.cost if route.cost_fn is None else route.cost_fn(request)
            decision = await lim.atry_acquire(client, cost)
        except ValueError as exc:  # InvalidKey, or a cost function's bad answer: a 400, not a 500
            return problem_response(400, bad_request_body(lim.name, str(exc)), [])
        if not decision[0]:
            return _refusal(route, decision)
        if decision.delay:
            await shape(lim, client, cost, decision.delay)
        if route.headers is not None:
            _stash(request, route.headers.text(decision))
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _apply(request, exc.headers)
            if exc.status in refunds:
                refund(lim, client, cost)
            raise
        if not response.prepared:
            _apply(request, response.headers)
        if response.status in refunds:
            refund(lim, client, cost)
        return response

    return rate_limit


def _refusal(route: Route, decision: Decision) -> web.Response:
    headers = [] if route.headers is None else route.headers.text(decision)
    seconds = retry_after_seconds(decision[3])
    if seconds is None:
        return problem_response(429, route.never_body, headers)
    headers.append(("Retry-After", str(seconds)))
    return problem_response(429, route.body, headers)


def _stash(request: web.Request, pairs: list[tuple[str, str]]) -> None:
    pending: list[tuple[str, str]] | None = request.get(PENDING)
    if pending is None:
        request[PENDING] = pairs
    else:
        pending.extend(pairs)


def _apply(request: web.Request, headers: MutableMapping[str, str]) -> None:
    """Move the waiting headers onto a response (each pair once, whoever gets there first)."""
    pending: list[tuple[str, str]] | None = request.pop(PENDING, None)
    if pending:
        add: Any = getattr(headers, "add", None)
        for name, value in pending:
            if add is not None:
                add(name, value)
            else:
                headers[name] = value


async def rate_limit_headers_hook(request: web.Request, response: web.StreamResponse) -> None:
    """For ``app.on_response_prepare``: puts the headers on streamed responses too."""
    _apply(request, response.headers)
