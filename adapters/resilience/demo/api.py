"""The demo's API: a Starlette app behind the library's middleware, calling the payments origins.

Request path, outermost first::

    RateLimitMiddleware(PlanLimits: free / paid, per API key)
      IdempotencyMiddleware(SQLiteIdempotencyStore in a temporary directory)
        BulkheadMiddleware(8 in flight + a short queue)
          Starlette: POST /charges, GET /balance
            FailoverClient(primary, secondary; a breaker per origin, a RetryBudget)
            ClaimCheck(FileBlobStore) for receipts over 16 KiB

A replay or a "still running" answer never takes a bulkhead slot (idempotency
sits outside the bulkhead); a rate-limited client costs one limiter decision.
Every failure the API sees upstream becomes a 503 problem with
``Retry-After``, never a 500.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from resilience import GCRA, Bulkhead, CircuitBreaker, CountWindow, RateLimiter, RetryBudget
from resilience.aiohttp import FailoverClient
from resilience.asgi import (
    BulkheadMiddleware,
    IdempotencyMiddleware,
    PlanLimits,
    RateLimitMiddleware,
    Rule,
    header,
)
from resilience.claimcheck import ClaimCheck, FileBlobStore
from resilience.errors import ResilienceError
from resilience.events import EventBus
from resilience.idempotency.sqlite import SQLiteIdempotencyStore

__all__ = ["ACCOUNTS", "Api", "build_api"]

ACCOUNTS = {  # API key -> plan (the demo's user store)
    "free-ana": "free",
    "free-bo": "free",
    "paid-cy": "paid",
    "paid-di": "paid",
    "free-mallory": "free",  # the abusive client: a free account hammering the API
}
RECEIPT_THRESHOLD = 16 * 1024


def api_key(scope: Any) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            return str(value.decode("latin-1"))
    return None


def plan_of(scope: Any) -> str | None:
    key = api_key(scope)
    return None if key is None else ACCOUNTS.get(key)


@dataclass
class Api:
    """The app and the parts the live view reads."""

    failover: FailoverClient
    bulkhead: Bulkhead
    claim_check: ClaimCheck
    idempotency_store: SQLiteIdempotencyStore
    app: Any = None  # the ASGI app, middleware included
    tickets: list[tuple[bytes, str]] = field(default_factory=list)  # (envelope, receipt sha256)


def _problem(status: int, title: str, detail: str, policy: str) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body["policy"] = policy
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/problem+json",
        headers={"Retry-After": "1"},
    )


def build_api(primary: str, secondary: str, workdir: Path, events: EventBus) -> Api:
    """The ASGI app; enter ``api.failover`` (``async with``) before serving it."""
    breakers = tuple(
        CircuitBreaker(
            f"payments.{origin}",
            failure_rate_threshold=0.5,
            minimum_calls=8,
            window=CountWindow(20),
            consecutive_failures=3,
            open_duration=1.0,
            half_open_max_calls=2,
            events=events,
        )
        for origin in ("primary", "secondary")
    )
    failover = FailoverClient(
        primary,
        secondary,
        attempt_timeout=0.7,
        health_interval=0.25,
        unhealthy_after=4,  # the breaker (3 in a row) reacts first; health checks confirm
        healthy_after=3,
        budget=RetryBudget(ratio=0.5, min_per_second=20.0, window=5.0),
        breakers=(breakers[0], breakers[1]),
        name="payments",
        events=events,
    )
    bulkhead = Bulkhead("api", max_concurrent=8, max_queue=4, queue_timeout=0.1, events=events)
    claim_check = ClaimCheck(
        FileBlobStore(workdir / "receipts", fsync=False),
        secrets.token_bytes(32),
        threshold=RECEIPT_THRESHOLD,
        events=events,
    )
    store = SQLiteIdempotencyStore(workdir / "idempotency.sqlite3")
    api = Api(failover, bulkhead, claim_check, store)

    async def charges(request: Request) -> Response:
        try:
            body = await request.json()
            amount = int(body["amount"])
        except (ValueError, KeyError, TypeError):
            return _problem(400, "Bad request", "send {'amount': <int>}", "api")
        key = request.headers.get("idempotency-key")
        if not key:
            return _problem(400, "Bad request", "an Idempotency-Key header is required", "api")
        principal = api_key(request.scope) or "anonymous"
        upstream_key = f"{principal}:{key}"  # one provider-side key per client key
        try:
            async with failover.post(
                "/charges",
                json={"amount": amount, "account": principal},
                headers={"Idempotency-Key": upstream_key},
            ) as resp:
                if resp.status == 409:  # the provider still runs this charge: come back
                    return _problem(503, "Payment in progress", "retry shortly", "payments")
                if resp.status != 201:
                    return _problem(
                        503, "Payments unavailable", f"upstream {resp.status}", "payments"
                    )
                charge = await resp.json()
        except (TimeoutError, aiohttp.ClientError, ResilienceError) as exc:
            return _problem(503, "Payments unavailable", type(exc).__name__, "payments")
        receipt = charge.pop("receipt").encode()
        try:
            envelope = await claim_check.acheck_in(receipt)
        except OSError as exc:  # the receipt store failed: the charge stands, retry for it
            return _problem(503, "Receipt store unavailable", type(exc).__name__, "receipts")
        raw = bytes(envelope)
        if envelope.ticket is not None:  # a large receipt: the client gets a signed ticket
            api.tickets.append((raw, hashlib.sha256(receipt).hexdigest()))
        charge["receipt"] = json.loads(raw)
        return JSONResponse(charge, status_code=201)

    async def balance(request: Request) -> Response:
        try:
            async with failover.get("/balance") as resp:
                if resp.status != 200:
                    return _problem(
                        503, "Payments unavailable", f"upstream {resp.status}", "payments"
                    )
                return JSONResponse(await resp.json())
        except (TimeoutError, aiohttp.ClientError, ResilienceError) as exc:
            return _problem(503, "Payments unavailable", type(exc).__name__, "payments")

    inner = Starlette(
        routes=[Route("/charges", charges, methods=["POST"]), Route("/balance", balance)]
    )
    plans = PlanLimits(
        plan_of,
        {
            "free": RateLimiter(GCRA(4, 1.0, burst=4), name="free", events=events),
            "paid": RateLimiter(GCRA(40, 1.0, burst=20), name="paid", events=events),
        },
        default="free",
    )
    api.app = RateLimitMiddleware(
        IdempotencyMiddleware(
            BulkheadMiddleware(inner, bulkhead, retry_after=1.0),
            store,
            principal=api_key,
            lease=10.0,
            events=events,
        ),
        plans,
        key=header("X-API-Key"),
        rules=[Rule("/healthz", exempt=True)],
    )
    return api
