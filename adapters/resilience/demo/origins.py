"""The two upstream "payments" origins, on aiohttp, with the fault script applied.

Both origins belong to one payment provider and share its ledger and its
idempotency records (as Stripe's regions do): a charge is executed at most
once per ``Idempotency-Key``, whichever origin receives it.  Every executed
charge is appended to :class:`Ledger`, the record the verdict is computed from.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from resilience.aiohttp import idempotency_middleware
from resilience.demo.scenario import Fault, Scenario
from resilience.idempotency import MemoryIdempotencyStore

__all__ = ["Charge", "Ledger", "Origin", "start_origin"]

LARGE_RECEIPT = 64 * 1024  # bytes: a receipt with line items and a scanned signature
FAULT: Any = web.RequestKey("demo_fault", Fault)


@dataclass(frozen=True, slots=True)
class Charge:
    """One charge the provider executed."""

    t: float
    origin: str
    key: str
    account: str
    amount: int


@dataclass
class Ledger:
    """The provider's own record: charges executed, and charge requests received per origin."""

    charges: list[Charge] = field(default_factory=list)
    received: Counter[str] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)


@dataclass
class Origin:
    """One origin being served; ``close()`` stops it and releases its port."""

    name: str
    url: str
    runner: web.AppRunner

    async def close(self) -> None:
        await self.runner.cleanup()


def receipt(charge_id: str, amount: int) -> str:
    """A receipt: a few hundred bytes, or ``LARGE_RECEIPT`` for big payments."""
    head = f"RECEIPT {charge_id}\namount: {amount}\n"
    if amount < 900:
        return head + "thank you\n"
    line = f"{charge_id} line item ........................................ {amount}\n"
    return head + line * (LARGE_RECEIPT // len(line))


def build_origin_app(
    name: str,
    scenario: Scenario,
    now: Callable[[], float],
    ledger: Ledger,
    records: MemoryIdempotencyStore,
) -> web.Application:
    """One origin: faults first, then the provider's idempotency records, then the handlers."""

    @web.middleware
    async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        fault = scenario.fault(name, now(), health_check=request.path == "/healthz")
        if request.method == "POST":
            ledger.received[name] += 1
        if fault.kind == "down":  # the host is gone: the connection drops, no answer
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPServiceUnavailable()
        if fault.kind == "error":
            await asyncio.sleep(fault.delay)
            return web.json_response({"error": "upstream overloaded"}, status=503)
        request[FAULT] = fault
        return await handler(request)

    async def charge(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(request[FAULT].delay)  # processing: the key's lease is held meanwhile
        amount = int(body["amount"])
        charge_id = f"ch_{len(ledger.charges) + 1:05d}"
        key = request.headers.get("Idempotency-Key", "")
        ledger.charges.append(Charge(now(), name, key, str(body["account"]), amount))
        ledger.served[name] += 1
        answer = {"id": charge_id, "amount": amount, "origin": name}
        answer["receipt"] = receipt(charge_id, amount)
        return web.json_response(answer, status=201)

    async def balance(request: web.Request) -> web.Response:
        await asyncio.sleep(request[FAULT].delay)
        ledger.served[name] += 1
        return web.json_response({"origin": name, "balance": 1000})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(
        middlewares=[faults, idempotency_middleware(records, lease=30.0, name=f"{name}-ledger")]
    )
    app.router.add_post("/charges", charge)
    app.router.add_get("/balance", balance)
    app.router.add_get("/healthz", healthz)
    return app


async def start_origin(
    name: str,
    scenario: Scenario,
    now: Callable[[], float],
    ledger: Ledger,
    records: MemoryIdempotencyStore,
) -> Origin:
    """Serve one origin on 127.0.0.1, on a port the OS picks."""
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # dropped connections
    runner = web.AppRunner(
        build_origin_app(name, scenario, now, ledger, records),
        access_log=None,
        handle_signals=False,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
    except BaseException:
        await runner.cleanup()
        raise
    return Origin(name, f"http://{host}:{port}", runner)
