"""``resilience demo``: the whole library at work on a service under stress, on loopback.

Two payments origins with a fault script, an API behind per-plan rate
limits, idempotency keys and a bulkhead, calling the origins through the
failover client (a breaker per origin, a retry budget) with large receipts
through the claim check, and a traffic generator; a live view, a summary, a
verdict computed from the origins' own ledger, and optionally a PNG
timeline.  Needs the ``demo`` extra (aiohttp, starlette, uvicorn, matplotlib).
See ``docs/demo.md``.
"""

from resilience.demo.main import main

__all__ = ["main"]
