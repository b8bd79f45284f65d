"""What every web adapter shares, with no web framework imported.

Key extraction (``client_ip``, ``header``, ``key_from``), the rate-limit
headers (IETF ``RateLimit``/``RateLimit-Policy`` and legacy ``X-RateLimit-*``),
``application/problem+json`` bodies and per-route rules.  The ASGI adapter
(``resilience.asgi``) and the aiohttp adapter (``resilience.aiohttp``) are thin
layers over this package, so both answer the same way.
"""

from resilience.web.headers import HeaderStyle, RateLimitHeaders, retry_after_seconds
from resilience.web.plans import PlanLimits
from resilience.web.problem import CONTENT_TYPE, QUOTA_EXCEEDED, REDUCED_CAPACITY
from resilience.web.request_keys import (
    CallableKey,
    ClientIP,
    HeaderKey,
    RequestKey,
    client_ip,
    header,
    key_from,
)
from resilience.web.rules import Route, RouteTable, Rule

__all__ = [
    "CONTENT_TYPE",
    "QUOTA_EXCEEDED",
    "REDUCED_CAPACITY",
    "CallableKey",
    "ClientIP",
    "HeaderKey",
    "HeaderStyle",
    "PlanLimits",
    "RateLimitHeaders",
    "RequestKey",
    "Route",
    "RouteTable",
    "Rule",
    "client_ip",
    "header",
    "key_from",
    "retry_after_seconds",
]
