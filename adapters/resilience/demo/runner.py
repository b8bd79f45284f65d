"""Start everything on 127.0.0.1, run the scenario, stop everything, judge.

Everything runs in this one process, on one event loop: the two origins
(aiohttp), the API (uvicorn) and the clients (aiohttp), each server on a
port the OS picks.  Nothing is started that could outlive the process:
servers and the temporary directory are closed in ``finally`` blocks, which
run on success, on error, on Ctrl-C (asyncio cancels the main task) and on
SIGTERM (handled the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from rich.console import Console

from resilience.demo.api import ACCOUNTS, Api, build_api
from resilience.demo.metrics import OUTCOMES, Metrics, percentile
from resilience.demo.origins import Ledger, Origin, start_origin
from resilience.demo.scenario import Scenario
from resilience.demo.traffic import Traffic
from resilience.demo.verdict import Verdict, judge, redeem_all
from resilience.demo.view import LiveView, PlainView, Tick, View
from resilience.events import CircuitStateChanged, Event, EventBus, FailoverSwitched
from resilience.idempotency import MemoryIdempotencyStore

__all__ = ["DemoOptions", "DemoResult", "run"]

TICK = 0.25  # seconds between looks at the system
CLIENTS = [*ACCOUNTS]
STARTUP_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    duration: float = 20.0
    seed: int = 1
    live: bool = False
    grace: float = 4.0


@dataclass
class DemoResult:
    scenario: Scenario
    verdict: Verdict
    metrics: Metrics
    ledger: Ledger
    policies: dict[str, str]
    ticks: list[Tick] = field(default_factory=list)
    changes: list[tuple[float, str]] = field(default_factory=list)


class _Clock:
    """Seconds since the traffic started (negative while the servers start)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()

    def start(self) -> None:
        self.t0 = self.loop.time()

    def __call__(self) -> float:
        return self.loop.time() - self.t0


class _StateChanges:
    """An event sink: breaker transitions and failover switches, as log lines."""

    min_level = "warning"

    def __init__(self, now: _Clock) -> None:
        self.now = now
        self.pending: list[tuple[float, str]] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, CircuitStateChanged):
            self.pending.append((self.now(), f"breaker {event.policy}: {event.old} -> {event.new}"))
        elif isinstance(event, FailoverSwitched):
            self.pending.append(
                (self.now(), f"failover: traffic {event.old} -> {event.new} ({event.reason})")
            )


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the demo owns Ctrl-C and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def _serve_api(app: Any) -> AsyncIterator[str]:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="error",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn exited during startup")
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(STARTUP_TIMEOUT):
                await task
        if not task.done():
            task.cancel()


@contextlib.asynccontextmanager
async def _origins(
    scenario: Scenario, now: _Clock, ledger: Ledger
) -> AsyncIterator[tuple[Origin, Origin]]:
    records = MemoryIdempotencyStore()  # the provider's idempotency records, both origins
    primary = await start_origin("primary", scenario, now, ledger, records)
    try:
        secondary = await start_origin("secondary", scenario, now, ledger, records)
        try:
            yield primary, secondary
        finally:
            await secondary.close()
    finally:
        await primary.close()


async def run(options: DemoOptions, console: Console) -> DemoResult:
    """Run the whole scenario; every server and file it made is gone when this returns."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    if main is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        with tempfile.TemporaryDirectory(prefix="resilience-demo-") as folder:
            return await _run(options, console, Path(folder))
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)


async def _run(options: DemoOptions, console: Console, workdir: Path) -> DemoResult:
    scenario = Scenario(options.duration, options.seed)
    now = _Clock()
    changes = _StateChanges(now)
    bus = EventBus([changes])
    ledger = Ledger()
    metrics = Metrics()
    async with _origins(scenario, now, ledger) as (primary, secondary):
        api = build_api(primary.url, secondary.url, workdir, bus)
        try:
            async with api.failover, _serve_api(api.app) as url:
                console.print(
                    f"payments origins: primary {primary.url}, secondary {secondary.url}; "
                    f"API {url}; {options.duration:.0f} s of traffic, seed {options.seed}",
                    highlight=False,
                    soft_wrap=True,
                )
                view: View = (
                    LiveView(console, options.duration) if options.live else PlainView(console)
                )
                traffic = Traffic(
                    url, metrics, now, options.duration, options.seed, grace=options.grace
                )
                ticks: list[Tick] = []
                log: list[tuple[float, str]] = []
                try:
                    now.start()
                    monitor = asyncio.create_task(
                        _monitor(scenario, api, metrics, now, changes, view, ticks, log)
                    )
                    try:
                        await traffic.run()
                    finally:
                        monitor.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await monitor
                finally:
                    view.close()
                intact = await redeem_all(api.claim_check, api.tickets)
        finally:
            api.idempotency_store.close()
    verdict = judge(
        ledger, traffic.payments, metrics, scenario.phase("outage"), len(api.tickets), intact
    )
    return DemoResult(scenario, verdict, metrics, ledger, traffic.policies, ticks, log)


async def _monitor(
    scenario: Scenario,
    api: Api,
    metrics: Metrics,
    now: _Clock,
    changes: _StateChanges,
    view: View,
    ticks: list[Tick],
    log: list[tuple[float, str]],
) -> None:
    phase = ""
    while True:
        t = now()
        current = scenario.phase_at(t)
        if current.name != phase and t < scenario.duration:
            phase = current.name
            changes.pending.append((current.start, f"phase {phase}: {current.story}"))
        for when, text in sorted(changes.pending):
            log.append((when, text))
            view.log(max(0.0, when), text)
        changes.pending.clear()
        counts = metrics.counts(t - 1.0, t)
        latencies = metrics.latencies(t - 2.0, t)
        snapshot = api.failover.snapshot()
        tick = Tick(
            t=t,
            phase=current.name if t < scenario.duration else "drain",
            rates={name: float(counts.get(name, 0)) for name in OUTCOMES},
            p50=percentile(latencies, 0.5),
            p99=percentile(latencies, 0.99),
            active=snapshot.active,
            breaker=snapshot.primary.breaker,
            bulkhead=api.bulkhead.active,
            bulkhead_queued=api.bulkhead.queued,
            capacity=api.bulkhead.max_concurrent,
        )
        ticks.append(tick)
        view.show(tick)
        await asyncio.sleep(TICK)
