"""Timing and memory helpers shared by every ``bench_*`` module.

Why a harness of our own instead of ``timeit``: every figure must come with
a bare call measured the same way in the same run (the machine is shared and
noisy, so only ratios and minimums travel), async callables must be timed
inside one running loop, and a store's cost per key must be separated from
the keys themselves.

Timings are per call, loop overhead included (a ``for`` loop over a
pre-built ``range`` or list; about 10 ns), for the measured callable and for
its bare baseline alike.  We report the minimum and the median of the
samples: the minimum is the least disturbed by other processes, the median
shows how noisy the run was.  :func:`interleave` measures several cases in
turns so that a disturbance lasting seconds spreads over all of them instead
of inflating one.  The cyclic GC stays enabled, as in production.

- ``time_sync(fn, *args)`` / ``time_async(coro_fn, *args)``: ns per call.
- ``time_sync_over(fn, items)`` / ``time_async_over``: one call per item (keys).
- ``sample_over(fn, items)``: one raw pass, for hand-made rounds.
- ``bare`` / ``abare``: the baselines.  ``Traced`` / ``bytes_per_key``: tracemalloc.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "Timing",
    "Traced",
    "abare",
    "bare",
    "bytes_per_key",
    "interleave",
    "sample_over",
    "time_async",
    "time_async_over",
    "time_sync",
    "time_sync_over",
]

K = TypeVar("K")
Batch = Callable[[int], int]
"""Runs ``n`` calls and returns the elapsed nanoseconds."""

DEFAULT_REPEAT = 7
DEFAULT_TARGET = 0.05  # seconds per repeat
_perf_ns = time.perf_counter_ns


@dataclass(frozen=True, slots=True)
class Timing:
    """Nanoseconds per call, one sample per batch of ``number`` calls."""

    samples: tuple[float, ...]
    number: int

    @property
    def min_ns(self) -> float:
        return min(self.samples)

    @property
    def median_ns(self) -> float:
        return statistics.median(self.samples)

    def ratio(self, base: Timing) -> float:
        """How many bare calls this costs (minimum against minimum)."""
        return self.min_ns / base.min_ns

    def merge(self, other: Timing) -> Timing:
        return Timing(self.samples + other.samples, min(self.number, other.number))


def interleave(cases: Mapping[K, Callable[[], Timing]], passes: int = 3) -> dict[K, Timing]:
    """Measure every case ``passes`` times, round-robin, and merge each case's samples.

    On a shared machine a disturbance can last seconds; taking turns spreads
    every case (and its bare baseline) over the whole run, so one unlucky
    moment cannot inflate a single row.
    """
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes!r}")
    merged: dict[K, Timing] = {}
    for _ in range(passes):
        for key, measure in cases.items():
            timing = measure()
            merged[key] = merged[key].merge(timing) if key in merged else timing
    return merged


def bare(*args: Any) -> None:
    """The baseline: a Python function call that does nothing."""


async def abare(*args: Any) -> None:
    """The async baseline: awaiting a coroutine that does nothing."""


def _measure(
    batch: Batch,
    *,
    number: int | None,
    repeat: int,
    target: float,
    unit: int,
    setup: Callable[[], object] | None,
) -> Timing:
    """Warm up, size the batch to ``target`` seconds (multiple of ``unit``), repeat."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat!r}")
    if setup is not None:
        setup()
    if number is None:
        number = unit
        while True:
            elapsed = batch(number)  # doubles as the warmup
            if elapsed >= target * 1e9 / 5 or number >= 1 << 26:
                break
            number *= 2
        number = max(unit, int(number * target * 1e9 / max(elapsed, 1)) // unit * unit)
    else:
        batch(min(number, max(unit, 1000 // unit * unit)))  # warmup
    gc.collect()
    samples: list[float] = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        samples.append(batch(number) / number)
    return Timing(tuple(samples), number)


def time_sync(
    fn: Callable[..., object],
    *args: Any,
    number: int | None = None,
    repeat: int = DEFAULT_REPEAT,
    target: float = DEFAULT_TARGET,
    setup: Callable[[], object] | None = None,
) -> Timing:
    """Time ``fn(*args)``; ``setup()`` runs before each repeat (untimed)."""

    def batch(n: int) -> int:
        loop = range(n)
        start = _perf_ns()
        for _ in loop:
            fn(*args)
        return _perf_ns() - start

    return _measure(batch, number=number, repeat=repeat, target=target, unit=1, setup=setup)


def time_sync_over(
    fn: Callable[[Any], object],
    items: Sequence[Any],
    *,
    repeat: int = DEFAULT_REPEAT,
    target: float = DEFAULT_TARGET,
    setup: Callable[[], object] | None = None,
) -> Timing:
    """Time ``fn(item)`` for each of ``items`` in turn (e.g. keys in random order)."""
    if not items:
        raise ValueError("items must not be empty")
    items = list(items)

    def batch(n: int) -> int:
        rounds = range(n // len(items))
        start = _perf_ns()
        for _ in rounds:
            for item in items:
                fn(item)
        return _perf_ns() - start

    return _measure(batch, number=None, repeat=repeat, target=target, unit=len(items), setup=setup)


def sample_over(fn: Callable[[Any], object], items: Sequence[Any]) -> float:
    """One pass of ``fn(item)`` over ``items``: ns per call, no warmup (for paired rounds)."""
    start = _perf_ns()
    for item in items:
        fn(item)
    return (_perf_ns() - start) / len(items)


def time_async(
    fn: Callable[..., Awaitable[object]],
    *args: Any,
    number: int | None = None,
    repeat: int = DEFAULT_REPEAT,
    target: float = DEFAULT_TARGET,
    setup: Callable[[], object] | None = None,
) -> Timing:
    """Time ``await fn(*args)`` inside one event loop (created here, closed after)."""

    async def abatch(n: int) -> int:
        loop = range(n)
        start = _perf_ns()
        for _ in loop:
            await fn(*args)
        return _perf_ns() - start

    return _in_loop(abatch, number=number, repeat=repeat, target=target, unit=1, setup=setup)


def time_async_over(
    fn: Callable[[Any], Awaitable[object]],
    items: Sequence[Any],
    *,
    repeat: int = DEFAULT_REPEAT,
    target: float = DEFAULT_TARGET,
    setup: Callable[[], object] | None = None,
) -> Timing:
    """Time ``await fn(item)`` for each of ``items`` in turn."""
    if not items:
        raise ValueError("items must not be empty")
    items = list(items)

    async def abatch(n: int) -> int:
        rounds = range(n // len(items))
        start = _perf_ns()
        for _ in rounds:
            for item in items:
                await fn(item)
        return _perf_ns() - start

    return _in_loop(abatch, number=None, repeat=repeat, target=target, unit=len(items), setup=setup)


def _in_loop(
    abatch: Callable[[int], Coroutine[Any, Any, int]],
    *,
    number: int | None,
    repeat: int,
    target: float,
    unit: int,
    setup: Callable[[], object] | None,
) -> Timing:
    loop = asyncio.new_event_loop()
    try:

        def batch(n: int) -> int:
            return loop.run_until_complete(abatch(n))

        return _measure(batch, number=number, repeat=repeat, target=target, unit=unit, setup=setup)
    finally:
        loop.close()


class Traced:
    """``with Traced() as t: ...; t.growth()`` = bytes allocated and still alive.

    Anything created before entering (the keys themselves, say) is not
    counted; a full GC runs before each reading so that garbage is not
    mistaken for state.
    """

    def __init__(self) -> None:
        self._base = 0

    def __enter__(self) -> Traced:
        gc.collect()
        tracemalloc.start()
        self._base = tracemalloc.get_traced_memory()[0]
        return self

    def growth(self) -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - self._base

    def __exit__(self, *exc: object) -> None:
        tracemalloc.stop()


def bytes_per_key(insert: Callable[[str], object], keys: Sequence[str]) -> float:
    """Bytes a store keeps per key after ``insert(key)`` for each (pre-built) key."""
    if not keys:
        raise ValueError("keys must not be empty")
    with Traced() as traced:
        for key in keys:
            insert(key)
        return traced.growth() / len(keys)


def interleaved_table(
    table: str,
    cases: Mapping[str, Callable[[], Timing]],
    base: str,
    results: dict[str, Timing],
    passes: int = 3,
) -> list[dict[str, Any]]:
    """Measure ``cases`` interleaved; rows relative to ``cases[base]``.

    Each timing is also filed in ``results`` as ``"table / name"`` (and the
    base as ``"table / <bare>"``) for the bars tables built afterwards.
    """
    timings = interleave(cases, passes)
    bare_timing = timings[base]
    for name, timing in timings.items():
        results[f"{table} / {name}"] = timing
    results[f"{table} / <bare>"] = bare_timing
    return [
        {
            "table": table,
            "name": name,
            "ns_per_call": round(timing.min_ns, 1),
            "ns_median": round(timing.median_ns, 1),
            "ratio_to_bare": round(timing.ratio(bare_timing), 2),
        }
        for name, timing in timings.items()
    ]


def optional_import(module: str) -> Any:
    """A peer library, or ``None`` when it is not installed (its rows are skipped)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def sync_case(fn: Callable[..., object], *args: Any, repeat: int = 3) -> Callable[[], Timing]:
    """A deferred ``time_sync(fn, *args)`` for :func:`interleave`."""
    return lambda: time_sync(fn, *args, repeat=repeat)


def async_case(fn: Callable[..., Any], *args: Any, repeat: int = 3) -> Callable[[], Timing]:
    """A deferred ``time_async(fn, *args)`` for :func:`interleave`."""
    return lambda: time_async(fn, *args, repeat=repeat)
