"""Retry and bulkhead against tenacity, stamina, backoff, hyx and asyncio.Semaphore.

Four measurements, each with a bare call timed in the same run (interleaved,
so a noisy moment on the shared machine cannot inflate one row):

1. retry, first attempt succeeds, sync: ours (decorator, ``.call``, with a
   budget) against tenacity, stamina and backoff, all configured for 3 attempts
   with exponential backoff;
2. the same, async (hyx retry too);
3. bulkhead with a free slot, async: ours (``acall``, decorator, adaptive)
   against ``async with asyncio.Semaphore`` and hyx's bulkhead; and sync
   against ``with threading.BoundedSemaphore``;
4. rejection including raising and catching the exception: our full bulkhead
   (sync and async) against hyx's.  The bar is judged on the sync path, like
   the peers' figures in DESIGN.md; the async row adds a coroutine frame that
   the exception unwinds through and is shown for information.

Then the bars of DESIGN.md section 5, PASS or FAIL on the minimum.  Run
standalone with ``python -m benchmarks.bench_retry_bulkhead``; ``run()``
returns the rows (``name``, ``ns_per_call``, ``ratio_to_bare``, plus the
``table`` they belong to) for ``python -m benchmarks``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
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
from resilience.bulkhead import AdaptiveBulkhead, Bulkhead
from resilience.errors import BulkheadFull
from resilience.events import EventBus
from resilience.retrying import RetryBudget, retry

Row = dict[str, Any]

RETRY_SYNC_NS = 400.0
RETRY_ASYNC_NS = 600.0
BULKHEAD_X_SEMAPHORE = 1.3
REJECTED_NS = 1200.0
PASSES = 3
REPEAT = 3

RETRY_SYNC = "Retry, first attempt succeeds, sync"
RETRY_ASYNC = "Retry, first attempt succeeds, async"
BULKHEAD_ASYNC = "Bulkhead, slot free, async"
BULKHEAD_SYNC = "Bulkhead, slot free, sync"
REJECTED = "Rejection incl. raise"


_optional = optional_import


tenacity = _optional("tenacity")
stamina = _optional("stamina")
backoff = _optional("backoff")
hyx_retry = _optional("hyx.retry")
hyx_bulkhead = _optional("hyx.bulkhead")


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


# -- retry ---------------------------------------------------------------------------


def bench_retry_sync(results: dict[str, Timing]) -> list[Row]:
    quiet = EventBus()
    ours = retry(attempts=3, events=quiet)
    with_budget = retry(attempts=3, budget=RetryBudget(), events=quiet)
    cases: dict[str, Callable[[], Timing]] = {
        "bare call": _sync(bare),
        "resilience @retry": _sync(ours(bare)),
        "resilience retry.call": _sync(ours.call, bare),
        "resilience @retry(budget=RetryBudget())": _sync(with_budget(bare)),
    }
    if tenacity is not None:
        decorated = tenacity.retry(
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=10),
            reraise=True,
        )(bare)
        cases["tenacity @retry"] = _sync(decorated)
    if stamina is not None:
        stamina.instrumentation.set_on_retry_hooks([])
        cases["stamina @retry"] = _sync(stamina.retry(on=Exception, attempts=3)(bare))
    if backoff is not None:
        cases["backoff @on_exception"] = _sync(
            backoff.on_exception(backoff.expo, Exception, max_tries=3, logger=None)(bare)
        )
    return _table(RETRY_SYNC, cases, "bare call", results)


def bench_retry_async(results: dict[str, Timing]) -> list[Row]:
    quiet = EventBus()
    ours = retry(attempts=3, events=quiet)
    cases: dict[str, Callable[[], Timing]] = {
        "bare await": _async(abare),
        "resilience @retry": _async(ours(abare)),
        "resilience retry.acall": _async(ours.acall, abare),
    }
    if tenacity is not None:
        decorated = tenacity.retry(
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=10),
            reraise=True,
        )(abare)
        cases["tenacity @retry"] = _async(decorated)
    if stamina is not None:
        cases["stamina @retry"] = _async(stamina.retry(on=Exception, attempts=3)(abare))
    if backoff is not None:
        cases["backoff @on_exception"] = _async(
            backoff.on_exception(backoff.expo, Exception, max_tries=3, logger=None)(abare)
        )
    if hyx_retry is not None:
        cases["hyx @retry"] = _async(hyx_retry.retry(on=Exception, attempts=3)(abare))
    return _table(RETRY_ASYNC, cases, "bare await", results)


# -- bulkhead ------------------------------------------------------------------------


def bench_bulkhead_async(results: dict[str, Timing]) -> list[Row]:
    quiet = EventBus()
    ours = Bulkhead("bench", max_concurrent=10, events=quiet)
    adaptive = AdaptiveBulkhead("bench-adaptive", initial_limit=10, events=quiet)
    semaphores: list[asyncio.Semaphore] = []

    async def semaphore_call(fn: Callable[[], Any]) -> Any:
        if not semaphores:  # created inside the running loop, like a real user's
            semaphores.append(asyncio.Semaphore(10))
        async with semaphores[0]:
            return await fn()

    cases: dict[str, Callable[[], Timing]] = {
        "bare await": _async(abare),
        "asyncio.Semaphore (async with)": lambda: _fresh(semaphores, _async(semaphore_call, abare)),
        "resilience Bulkhead.acall": _async(ours.acall, abare),
        "resilience @bulkhead": _async(ours(abare)),
        "resilience AdaptiveBulkhead.acall": _async(adaptive.acall, abare),
    }
    if hyx_bulkhead is not None:
        cases["hyx @bulkhead"] = _async(hyx_bulkhead.bulkhead(10, 10)(abare))
    return _table(BULKHEAD_ASYNC, cases, "bare await", results)


def _fresh(holder: list[Any], measure: Callable[[], Timing]) -> Timing:
    holder.clear()  # each measurement runs in a new event loop
    return measure()


def bench_bulkhead_sync(results: dict[str, Timing]) -> list[Row]:
    ours = Bulkhead("bench-sync", max_concurrent=10, events=EventBus())
    semaphore = threading.BoundedSemaphore(10)

    def semaphore_call(fn: Callable[[], Any]) -> Any:
        with semaphore:
            return fn()

    cases = {
        "bare call": _sync(bare),
        "threading.BoundedSemaphore (with)": _sync(semaphore_call, bare),
        "resilience Bulkhead.call": _sync(ours.call, bare),
    }
    return _table(BULKHEAD_SYNC, cases, "bare call", results)


def bench_rejected(results: dict[str, Timing]) -> list[Row]:
    quiet = EventBus()
    full = Bulkhead("full", max_concurrent=1, events=quiet)
    full._active = 1  # every slot taken, no queue: each call is refused

    def rejected_sync() -> None:
        try:  # noqa: SIM105 - what a caller writes; suppress() would add its own cost
            full.call(bare)
        except BulkheadFull:
            pass

    async def rejected_async() -> None:
        try:  # noqa: SIM105
            await full.acall(abare)
        except BulkheadFull:
            pass

    def raise_only() -> None:
        try:
            raise BulkheadFull("full")
        except BulkheadFull:
            pass

    cases: dict[str, Callable[[], Timing]] = {
        "bare call": _sync(bare),
        "raise + catch BulkheadFull (floor)": _sync(raise_only),
        "resilience Bulkhead.call refused": _sync(rejected_sync),
        "resilience Bulkhead.acall refused": _async(rejected_async),
    }
    if hyx_bulkhead is not None:
        from hyx.bulkhead.exceptions import BulkheadFull as HyxFull

        hyx_full = hyx_bulkhead.bulkhead(1, 1)
        hyx_full._manager._total_execs_limiter._value = 0  # every slot taken

        async def hyx_rejected() -> None:
            try:
                async with hyx_full:
                    await abare()
            except HyxFull:
                pass

        cases["hyx bulkhead refused"] = _async(hyx_rejected)
    return _table(REJECTED, cases, "bare call", results)


# -- bars ----------------------------------------------------------------------------


def bars(results: dict[str, Timing]) -> list[Row]:
    """PASS or FAIL on the minimum; ``ratio_to_bare`` is against the same table's bare call."""
    table = "Bars of DESIGN.md section 5 (retry, bulkhead)"
    rows: list[Row] = []

    def check(name: str, section: str, key: str, bar: float, against: str | None = None) -> None:
        timing = results.get(f"{section} / {key}")
        bare_timing = results.get(f"{section} / <bare>")
        if timing is None or bare_timing is None:
            return
        row: Row = {
            "table": table,
            "name": name,
            "ns_per_call": round(timing.min_ns, 1),
            "ratio_to_bare": round(timing.ratio(bare_timing), 2),
        }
        if against is None:
            row["bar"] = f"<= {bar:,.0f} ns"
            ok = timing.min_ns <= bar
        else:
            peer = results[f"{section} / {against}"]
            row["bar"] = f"<= {bar} x {against}"
            row["measured"] = f"{timing.ratio(peer):.2f} x"
            ok = timing.ratio(peer) <= bar
        row["result"] = "PASS" if ok else "FAIL"
        rows.append(row)

    check("retry first attempt, sync (@retry)", RETRY_SYNC, "resilience @retry", RETRY_SYNC_NS)
    check("retry first attempt, async (@retry)", RETRY_ASYNC, "resilience @retry", RETRY_ASYNC_NS)
    check(
        "bulkhead slot free, async (acall)",
        BULKHEAD_ASYNC,
        "resilience Bulkhead.acall",
        BULKHEAD_X_SEMAPHORE,
        against="asyncio.Semaphore (async with)",
    )
    check(
        "rejection incl. raise, bulkhead sync",
        REJECTED,
        "resilience Bulkhead.call refused",
        REJECTED_NS,
    )
    return rows


def run() -> list[dict[str, Any]]:
    logging.getLogger("backoff").disabled = True
    rows: list[Row] = []
    results: dict[str, Timing] = {}
    for section in (
        bench_retry_sync,
        bench_retry_async,
        bench_bulkhead_async,
        bench_bulkhead_sync,
        bench_rejected,
    ):
        rows.extend(section(results))
        gc.collect()
    rows.extend(bars(results))
    return rows


def main() -> None:
    from benchmarks.__main__ import machine, markdown, tables

    print(f"Machine: {machine()}\n")
    for title, group in tables("bench_retry_bulkhead", run()):
        print(f"### {title}\n\n{markdown(group)}\n", flush=True)


if __name__ == "__main__":
    main()
