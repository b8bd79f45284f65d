"""Circuit breaker against pybreaker, circuitbreaker, aiobreaker and purgatory.

Three measurements, each with a bare call timed in the same run (interleaved,
so a noisy moment on the shared machine cannot inflate one row):

1. closed, sync: ours (``.call``, decorator, with a time window, with
   slow-call tracking) against circuitbreaker's decorator, pybreaker
   (``.call`` and decorator) and purgatory's sync decorator;
2. closed, async: ours against circuitbreaker, aiobreaker and purgatory;
3. rejection while open, including raising and catching the exception
   (sync, plus async for information).  Every peer is opened the way users
   open it: by failing calls.

Then the bars of DESIGN.md section 5, PASS or FAIL on the minimum.  Run
standalone with ``python -m benchmarks.bench_breaker``; ``run()`` returns the
rows (``name``, ``ns_per_call``, ``ratio_to_bare``, plus the ``table`` they
belong to) for ``python -m benchmarks``.  Peers come from the ``bench`` extra
(pybreaker, circuitbreaker, aiobreaker, purgatory); a missing one only loses
its rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import logging
from collections.abc import Callable
from typing import Any

from benchmarks._harness import (
    Timing,
    abare,
    async_case,
    bare,
    interleaved_table,
    optional_import,
    sync_case,
)
from resilience.breaker import CircuitBreaker, TimeWindow
from resilience.errors import CircuitOpen
from resilience.events import EventBus

Row = dict[str, Any]

CLOSED_NS = 300.0
REJECTED_NS = 1200.0
PASSES = 3
REPEAT = 3

CLOSED_SYNC = "Breaker closed, sync"
CLOSED_ASYNC = "Breaker closed, async"
REJECTED = "Breaker open: rejection incl. raise"


_optional = optional_import


pybreaker = _optional("pybreaker")
circuitbreaker = _optional("circuitbreaker")
aiobreaker = _optional("aiobreaker")
purgatory = _optional("purgatory")


class Boom(Exception):
    pass


def _boom() -> None:
    raise Boom


async def _aboom() -> None:
    raise Boom


def _trip(call: Callable[[], object], times: int = 10) -> None:
    """Open a peer the way its users do: by failing calls."""
    for _ in range(times):
        with contextlib.suppress(Exception):
            call()


def _atrip(call: Callable[[], Any], times: int = 10) -> None:
    async def go() -> None:
        for _ in range(times):
            with contextlib.suppress(Exception):
                await call()

    asyncio.run(go())


def _table(
    table: str,
    cases: dict[str, Callable[[], Timing]],
    base: str,
    results: dict[str, Timing],
) -> list[Row]:
    """Measure ``cases`` interleaved; file each timing in ``results`` as "table / name"."""
    return interleaved_table(table, cases, base, results, PASSES)


def _sync(fn: Callable[..., object], *args: Any) -> Callable[[], Timing]:
    return sync_case(fn, *args, repeat=REPEAT)


def _async(fn: Callable[..., Any], *args: Any) -> Callable[[], Timing]:
    return async_case(fn, *args, repeat=REPEAT)


def _ours(name: str, **options: Any) -> CircuitBreaker:
    return CircuitBreaker(name, events=EventBus(), **options)


# -- closed ------------------------------------------------------------------------------


def bench_closed_sync(results: dict[str, Timing]) -> list[Row]:
    ours = _ours("closed")
    cases: dict[str, Callable[[], Timing]] = {
        "bare call": _sync(bare),
        "resilience @breaker": _sync(ours(bare)),
        "resilience breaker.call": _sync(ours.call, bare),
        "resilience @breaker, TimeWindow(60)": _sync(_ours("time", window=TimeWindow(60))(bare)),
        "resilience @breaker, slow_call_duration": _sync(
            _ours("slow", slow_call_duration=1.0)(bare)
        ),
    }
    if circuitbreaker is not None:
        cases["circuitbreaker @circuit"] = _sync(circuitbreaker.circuit(failure_threshold=5)(bare))
    if pybreaker is not None:
        peer = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
        cases["pybreaker .call"] = _sync(peer.call, bare)
        cases["pybreaker @breaker"] = _sync(peer(bare))
    if purgatory is not None:
        factory = purgatory.SyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
        cases["purgatory @breaker (sync)"] = _sync(factory("closed")(bare))
    return _table(CLOSED_SYNC, cases, "bare call", results)


def bench_closed_async(results: dict[str, Timing]) -> list[Row]:
    ours = _ours("aclosed")
    cases: dict[str, Callable[[], Timing]] = {
        "bare await": _async(abare),
        "resilience @breaker": _async(ours(abare)),
        "resilience breaker.acall": _async(ours.acall, abare),
        "resilience @breaker, TimeWindow(60)": _async(_ours("atime", window=TimeWindow(60))(abare)),
    }
    if circuitbreaker is not None:
        cases["circuitbreaker @circuit"] = _async(
            circuitbreaker.circuit(failure_threshold=5)(abare)
        )
    if aiobreaker is not None:
        peer = aiobreaker.CircuitBreaker(
            fail_max=5, timeout_duration=datetime.timedelta(seconds=30)
        )
        cases["aiobreaker .call_async"] = _async(peer.call_async, abare)
    if purgatory is not None:
        factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
        cases["purgatory @breaker (async)"] = _async(factory("aclosed")(abare))
    return _table(CLOSED_ASYNC, cases, "bare await", results)


# -- open --------------------------------------------------------------------------------


def _refusing(call: Callable[[], object], errors: tuple[type[BaseException], ...]) -> Any:
    def refused() -> None:
        try:  # noqa: SIM105 - what a caller writes; suppress() would add its own cost
            call()
        except errors:
            pass

    return refused


def _arefusing(call: Callable[[], Any], errors: tuple[type[BaseException], ...]) -> Any:
    async def refused() -> None:
        try:  # noqa: SIM105
            await call()
        except errors:
            pass

    return refused


def bench_rejected(results: dict[str, Timing]) -> list[Row]:
    ours = _ours("open", minimum_calls=5, open_duration=1e9)
    _trip(lambda: ours.call(_boom))
    decorated = ours(bare)
    adecorated = ours(abare)

    def raise_only() -> None:
        try:
            raise CircuitOpen("open", 1.0)
        except CircuitOpen:
            pass

    cases: dict[str, Callable[[], Timing]] = {
        "bare call": _sync(bare),
        "raise + catch CircuitOpen(...) (reference)": _sync(raise_only),
        "resilience @breaker refused": _sync(_refusing(decorated, (CircuitOpen,))),
        "resilience breaker.call refused": _sync(
            _refusing(lambda: ours.call(bare), (CircuitOpen,))
        ),
        "resilience @breaker refused, async": _async(_arefusing(adecorated, (CircuitOpen,))),
    }
    if pybreaker is not None:
        peer = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=1e9)
        _trip(lambda: peer.call(_boom))
        errors = (pybreaker.CircuitBreakerError,)
        cases["pybreaker .call refused"] = _sync(_refusing(lambda: peer.call(bare), errors))
    if circuitbreaker is not None:
        circuit = circuitbreaker.circuit(failure_threshold=5, recovery_timeout=10**9)
        failing, passing = circuit(_boom), circuit(bare)
        _trip(failing)
        errors = (circuitbreaker.CircuitBreakerError,)
        cases["circuitbreaker @circuit refused"] = _sync(_refusing(passing, errors))
    if purgatory is not None:
        from purgatory.domain.model import OpenedState

        factory = purgatory.SyncCircuitBreakerFactory(default_threshold=5, default_ttl=1e9)
        failing, passing = factory("open")(_boom), factory("open")(bare)
        _trip(failing)
        cases["purgatory @breaker refused (sync)"] = _sync(_refusing(passing, (OpenedState,)))
    if aiobreaker is not None:
        apeer = aiobreaker.CircuitBreaker(
            fail_max=5, timeout_duration=datetime.timedelta(seconds=10**6)
        )
        _atrip(lambda: apeer.call_async(_aboom))
        errors = (aiobreaker.CircuitBreakerError,)
        cases["aiobreaker .call_async refused, async"] = _async(
            _arefusing(lambda: apeer.call_async(abare), errors)
        )
    return _table(REJECTED, cases, "bare call", results)


# -- bars --------------------------------------------------------------------------------


def bars(results: dict[str, Timing]) -> list[Row]:
    """PASS or FAIL on the minimum; ``ratio_to_bare`` is against the same table's bare call."""
    table = "Bars of DESIGN.md section 5 (breaker)"
    rows: list[Row] = []

    def check(name: str, section: str, key: str, bar: float) -> None:
        timing = results.get(f"{section} / {key}")
        bare_timing = results.get(f"{section} / <bare>")
        if timing is None or bare_timing is None:
            return
        rows.append(
            {
                "table": table,
                "name": name,
                "ns_per_call": round(timing.min_ns, 1),
                "ratio_to_bare": round(timing.ratio(bare_timing), 2),
                "bar": f"<= {bar:,.0f} ns",
                "result": "PASS" if timing.min_ns <= bar else "FAIL",
            }
        )

    check("breaker closed, sync (@breaker)", CLOSED_SYNC, "resilience @breaker", CLOSED_NS)
    check("breaker closed, sync (.call)", CLOSED_SYNC, "resilience breaker.call", CLOSED_NS)
    check(
        "rejection incl. raise, breaker open (@breaker)",
        REJECTED,
        "resilience @breaker refused",
        REJECTED_NS,
    )
    check(
        "rejection incl. raise, breaker open (.call)",
        REJECTED,
        "resilience breaker.call refused",
        REJECTED_NS,
    )
    return rows


def run() -> list[dict[str, Any]]:
    logging.getLogger("pybreaker").disabled = True
    rows: list[Row] = []
    results: dict[str, Timing] = {}
    for section in (bench_closed_sync, bench_closed_async, bench_rejected):
        rows.extend(section(results))
        gc.collect()
    rows.extend(bars(results))
    return rows


def main() -> None:
    from benchmarks.__main__ import machine, markdown, tables

    print(f"Machine: {machine()}\n")
    for title, group in tables("bench_breaker", run()):
        print(f"### {title}\n\n{markdown(group)}\n", flush=True)


if __name__ == "__main__":
    main()
