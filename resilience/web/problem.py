"""``application/problem+json`` bodies (RFC 9457) for the responses the middleware sends itself.

The problem types are the ones the IETF RateLimit draft registers:
``quota-exceeded`` (429) and ``temporary-reduced-capacity`` (503).  Each body
names the policy that refused the request (``policy``, and the draft's
``violated-policies`` list) so a client or an operator reading logs knows
which limit it hit.  Bodies are constant per policy, so they are built once.
"""

from __future__ import annotations

import json

__all__ = [
    "CONTENT_TYPE",
    "QUOTA_EXCEEDED",
    "REDUCED_CAPACITY",
    "circuit_open_body",
    "overloaded_body",
    "problem",
    "rate_limited_body",
    "STORE_FULL",
    "store_full_body",
]

CONTENT_TYPE = "application/problem+json"
QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"
REDUCED_CAPACITY = "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity"
STORE_FULL = "tag:resilience-patterns,2026:rate-limit-store-full"
"""Our own problem type (a tag URI, RFC 4151, as RFC 9457 suggests for non-resolvable types)."""


def problem(
    type_: str, title: str, status: int, detail: str, policy: str, *, violated: bool = True
) -> bytes:
    """One problem document, UTF-8 JSON."""
    document: dict[str, object] = {
        "type": type_,
        "title": title,
        "status": status,
        "detail": detail,
        "policy": policy,
    }
    if violated:
        document["violated-policies"] = [policy]
    return json.dumps(
        document,
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")


def rate_limited_body(policy: str, *, never: bool = False) -> bytes:
    """429: the client exceeded ``policy``'s quota (``never``: this request can never fit)."""
    if never:
        detail = (
            f"The request costs more than rate-limit policy {policy!r} can ever admit; "
            "retrying will not help."
        )
    else:
        detail = (
            f"Too many requests for rate-limit policy {policy!r}; "
            "retry after the number of seconds in Retry-After."
        )
    return problem(QUOTA_EXCEEDED, "Quota Exceeded", 429, detail, policy)


def store_full_body(policy: str) -> bytes:
    """503: the limiter's key store is full, so a new client cannot be tracked (not its quota)."""
    detail = (
        f"Rate-limit policy {policy!r} is tracking as many clients as it can hold; new clients "
        "are refused until room frees up. Retry after the number of seconds in Retry-After."
    )
    return problem(STORE_FULL, "Rate Limiter at Capacity", 503, detail, policy, violated=False)


BAD_REQUEST = "about:blank"


def bad_request_body(policy: str, reason: str) -> bytes:
    """400: the request's rate-limit key or cost is unusable (too long, not a number)."""
    detail = f"The request cannot be rate limited by policy {policy!r}: {reason}"
    return problem(BAD_REQUEST, "Bad Request", 400, detail, policy)


def overloaded_body(policy: str) -> bytes:
    """503 from a full bulkhead: shed load rather than queue it."""
    detail = (
        f"Too many requests are in progress (bulkhead {policy!r} is full); "
        "retry after the number of seconds in Retry-After."
    )
    return problem(REDUCED_CAPACITY, "Temporary Reduced Capacity", 503, detail, policy)


def circuit_open_body(policy: str) -> bytes:
    """503 from an open circuit breaker: the service is failing and is left to recover."""
    detail = (
        f"The service is failing and is given time to recover (circuit {policy!r} is open); "
        "retry after the number of seconds in Retry-After."
    )
    return problem(REDUCED_CAPACITY, "Temporary Reduced Capacity", 503, detail, policy)
