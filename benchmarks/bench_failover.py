"""FailoverClient per request on loopback, against a bare ``aiohttp.ClientSession``.

The origins are real aiohttp servers in a separate process (so the client's
event loop measures only the client), on 127.0.0.1, answering ``200 ok``.
Each case keeps its own session (one keep-alive connection per origin) and
sends sequential GETs; cases take turns in short rounds (interleaved) so that
a disturbance on the shared machine spreads over all of them.  We report the
minimum and the median of the per-round means (wall time), their ratios to
the bare session, and the client process's own CPU time per request (the
server runs elsewhere, so this is the client's work alone and the least
disturbed by other load).  The bar is checked on the ratio of minimums.

Cases:
- ``bare session``: ``async with session.get(url) as r: await r.read()``;
- ``FailoverClient, healthy primary``: the same through the client (breaker,
  switch bookkeeping, no budget, no hedge).  Bar (DESIGN.md section 5): <= 1.15x;
- ``FailoverClient + budget + hedge_after``: every option on, primary healthy;
- ``failover, refused primary``: the primary's port is closed, the switch is
  held on the primary (``unhealthy_after`` huge), so every request pays a
  refused connect and then the secondary: the time to fail over per request;
- ``switched to the secondary``: the same refused primary with the default
  hysteresis: after 3 failures traffic goes to the secondary first.

Run: ``python -m benchmarks failover``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from resilience import CircuitBreaker, EventBus, RetryBudget
from resilience.aiohttp import FailoverClient

Row = dict[str, Any]
BAR = 1.15
REQUESTS_PER_ROUND = 20
ROUNDS = 120


def _serve(ready: Any, stop: Any) -> None:  # runs in the child process
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def main() -> None:
        ports = []
        runners = []
        for _ in range(2):
            app = web.Application()
            app.router.add_get("/{tail:.*}", ok)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            server: Any = site._server
            ports.append(server.sockets[0].getsockname()[1])
            runners.append(runner)
        ready.send(ports)
        while not stop.poll():  # noqa: ASYNC110 - a pipe from the parent process
            await asyncio.sleep(0.05)
        for runner in runners:
            await runner.cleanup()

    asyncio.run(main())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Case = Callable[[], Awaitable[None]]


async def _round(case: Case, n: int) -> tuple[float, float]:
    """Wall time and this process's CPU time (the client's own work), ns per request."""
    cpu = time.process_time_ns()
    start = time.perf_counter_ns()
    for _ in range(n):
        await case()
    wall = time.perf_counter_ns() - start
    return wall / n, (time.process_time_ns() - cpu) / n


async def _measure(ports: list[int]) -> list[Row]:
    primary, secondary = (f"http://127.0.0.1:{p}" for p in ports)
    refused = f"http://127.0.0.1:{_closed_port()}"
    quiet = EventBus()
    bare = aiohttp.ClientSession()
    plain = FailoverClient(primary, secondary, health_interval=None, events=quiet)
    loaded = FailoverClient(
        primary,
        secondary,
        health_interval=None,
        events=quiet,
        budget=RetryBudget(),
        hedge_after=1.0,
        attempt_timeout=5.0,
    )
    never_open = tuple(  # the refused primary must be tried on every request
        CircuitBreaker(name, consecutive_failures=10**9, failure_rate_threshold=None, events=quiet)
        for name in ("held.primary", "held.secondary")
    )
    held = FailoverClient(
        refused,
        secondary,
        health_interval=None,
        events=quiet,
        unhealthy_after=10**9,
        breakers=never_open,  # type: ignore[arg-type]
    )
    switched = FailoverClient(refused, secondary, health_interval=None, events=quiet)
    clients = (plain, loaded, held, switched)
    for client in clients:
        await client.__aenter__()
    try:

        async def bare_get() -> None:
            async with bare.get(primary + "/x") as r:
                await r.read()

        def through(client: FailoverClient) -> Case:
            async def get() -> None:
                async with client.get("/x") as r:
                    await r.read()

            return get

        async def bare_secondary() -> None:
            async with bare.get(secondary + "/x") as r:
                await r.read()

        cases: dict[str, Case] = {
            "bare session": bare_get,
            "FailoverClient, healthy primary": through(plain),
            "FailoverClient + budget + hedge_after, healthy primary": through(loaded),
            "bare session to the secondary": bare_secondary,
            "failover per request, refused primary (switch held)": through(held),
            "switched to the secondary (refused primary)": through(switched),
        }
        for case in cases.values():  # warm up: connections, switch state
            await _round(case, 20)
        samples: dict[str, list[float]] = {name: [] for name in cases}
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(ROUNDS):
            for name, case in cases.items():
                wall, used = await _round(case, REQUESTS_PER_ROUND)
                samples[name].append(wall)
                cpu[name].append(used)
    finally:
        for client in clients:
            await client.close()
        await bare.close()

    base = min(samples["bare session"])
    base_median = statistics.median(samples["bare session"])
    base_cpu = statistics.median(cpu["bare session"])
    rows: list[Row] = []
    for name, values in samples.items():
        ratio = min(values) / base
        row: Row = {
            "table": "failover client per request, loopback (separate server process)",
            "case": name,
            "us_min": round(min(values) / 1000, 1),
            "us_median": round(statistics.median(values) / 1000, 1),
            "ratio_min": round(ratio, 3),
            "ratio_median": round(statistics.median(values) / base_median, 3),
            "client_cpu_us": round(statistics.median(cpu[name]) / 1000, 1),
            "cpu_ratio": round(statistics.median(cpu[name]) / base_cpu, 3),
        }
        if name == "FailoverClient, healthy primary":
            row["bar"] = f"<= {BAR}x"
            row["meets_bar"] = ratio <= BAR
        rows.append(row)
    return rows


def run() -> list[Row]:
    context = multiprocessing.get_context("spawn")
    ready_parent, ready_child = context.Pipe()
    stop_parent, stop_child = context.Pipe()
    server = context.Process(target=_serve, args=(ready_child, stop_child), daemon=True)
    server.start()
    try:
        if not ready_parent.poll(30):
            raise RuntimeError("the origin servers did not start")
        ports = ready_parent.recv()
        return asyncio.run(_measure(ports))
    finally:
        stop_parent.send(True)
        server.join(10)
        if server.is_alive():
            server.kill()
            server.join()


if __name__ == "__main__":
    from benchmarks.__main__ import markdown

    print(markdown(run()))
