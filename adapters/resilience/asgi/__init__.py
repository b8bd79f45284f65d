"""Pure ASGI middleware: rate limiting, load shedding (bulkhead), circuit breaking, idempotency.

Works with any ASGI framework (Starlette, FastAPI, Litestar, Quart, raw
apps) and needs no dependency of its own.  See ``docs/web.md``.

    from resilience.asgi import RateLimitMiddleware, client_ip
    app = RateLimitMiddleware(app, limiter, key=client_ip(trusted_proxies=["10.0.0.0/8"]))
"""

from resilience.asgi.breaker import CircuitBreakerMiddleware
from resilience.asgi.bulkhead import BulkheadMiddleware
from resilience.asgi.idempotency import IdempotencyMiddleware
from resilience.asgi.logcontext import LogContextMiddleware
from resilience.asgi.ratelimit import RateLimitMiddleware
from resilience.asgi.valet import ValetKeyApp
from resilience.web.plans import PlanLimits
from resilience.web.request_keys import RequestKey, client_ip, header, key_from
from resilience.web.rules import Rule

__all__ = [
    "BulkheadMiddleware",
    "CircuitBreakerMiddleware",
    "IdempotencyMiddleware",
    "LogContextMiddleware",
    "RateLimitMiddleware",
    "PlanLimits",
    "RequestKey",
    "Rule",
    "ValetKeyApp",
    "client_ip",
    "header",
    "key_from",
]
