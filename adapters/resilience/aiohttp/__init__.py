"""aiohttp middleware (rate limiting, shedding, circuit breaking, idempotency), failover client.

The same behaviour and options as ``resilience.asgi``, as aiohttp
middlewares (``@web.middleware``, aiohttp 3.x).  See ``docs/web.md``.

    from aiohttp import web
    from resilience.aiohttp import rate_limit_middleware, client_ip
    app = web.Application(middlewares=[rate_limit_middleware(limiter, key=client_ip())])

This module is ``resilience.aiohttp``; inside it, ``import aiohttp`` still
means the aiohttp package (imports are absolute).
"""

from resilience.aiohttp.breaker import circuit_breaker_middleware
from resilience.aiohttp.bulkhead import bulkhead_middleware
from resilience.aiohttp.failover import (
    FailoverClient,
    FailoverError,
    FailoverSnapshot,
    OriginStatus,
)
from resilience.aiohttp.idempotency import idempotency_middleware
from resilience.aiohttp.logcontext import log_context_middleware
from resilience.aiohttp.ratelimit import rate_limit_headers_hook, rate_limit_middleware
from resilience.aiohttp.valet import valet_key_handler
from resilience.web.plans import PlanLimits
from resilience.web.request_keys import RequestKey, client_ip, header, key_from
from resilience.web.rules import Rule

__all__ = [
    "FailoverClient",
    "FailoverError",
    "FailoverSnapshot",
    "OriginStatus",
    "PlanLimits",
    "RequestKey",
    "Rule",
    "bulkhead_middleware",
    "circuit_breaker_middleware",
    "client_ip",
    "header",
    "idempotency_middleware",
    "key_from",
    "log_context_middleware",
    "rate_limit_headers_hook",
    "rate_limit_middleware",
    "valet_key_handler",
]
