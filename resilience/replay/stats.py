"""Streaming statistics for a replay: per-key peak per window, a timeline, delay percentiles."""

from __future__ import annotations

import bisect
import math
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["TOLERANCE", "DelayStats", "PeakWindow", "Timeline", "percentile"]

_SWEEP_EVERY = 1 << 16
TOLERANCE = 1e-6


class PeakWindow:
    """The most admissions one key got within any ``period`` seconds, computed as they stream.

    The measure of :func:`resilience.testing.max_admitted_in_window` (an
    admission at ``s`` counts at ``t`` while ``s > t - period``), per key, except
    that an admission stops counting ``TOLERANCE`` (1 microsecond) early:
    float rounding in a shaping queue's departure times (``t + k * interval``)
    must not turn ``limit`` evenly spaced requests into ``limit + 1``, and no
    access log is finer than a microsecond.  Each key keeps the times of its
    admissions still inside the window.  Keys
    whose window has emptied are dropped every so often, so memory follows
    the keys active in the last ``period``, not every key ever seen.
    Times passed for one key must not decrease.
    """

    __slots__ = ("_adds", "_logs", "_span", "best", "best_key", "best_start", "period")

    def __init__(self, period: float) -> None:
        if not (period > TOLERANCE and math.isfinite(period)):
            raise ValueError(f"period must be positive and finite, got {period!r}")
        self.period = period
        self._span = period - TOLERANCE
        self._logs: dict[str, deque[float]] = {}
        self._adds = 0
        self.best = 0
        self.best_key: str | None = None
        self.best_start = 0.0

    def add(self, key: str, t: float) -> None:
        log = self._logs.get(key)
        if log is None:
            self._logs[key] = log = deque((t,))
        else:
            log.append(t)
            edge = t - self._span
            while log[0] <= edge:
                log.popleft()
        if len(log) > self.best:
            self.best = len(log)
            self.best_key = key
            self.best_start = log[0]
        self._adds += 1
        if self._adds >= _SWEEP_EVERY:
            self._sweep(t)

    def _sweep(self, now: float) -> None:
        self._adds = 0
        edge = now - self._span
        stale = [key for key, log in self._logs.items() if log[-1] <= edge]
        for key in stale:
            del self._logs[key]

    def __len__(self) -> int:
        return len(self._logs)


class Timeline:
    """Admitted and rejected counts per time bin, for the plot.

    Bins start one second wide and double (merging neighbours) whenever the
    log outgrows ``max_bins``, so any time span costs bounded memory.  Times
    must not decrease.
    """

    __slots__ = ("admitted", "max_bins", "offset", "origin", "rejected", "width")

    def __init__(self, max_bins: int = 2048, width: float = 1.0) -> None:
        if max_bins < 2:
            raise ValueError(f"max_bins must be at least 2, got {max_bins!r}")
        self.max_bins = max_bins
        self.width = width
        self.origin: float | None = None
        self.offset = 0.0  # added to times on the way out (the replay runs on shifted times)
        self.admitted: list[int] = []
        self.rejected: list[int] = []

    def add(self, t: float, allowed: bool) -> None:
        origin = self.origin
        if origin is None:
            origin = self.origin = math.floor(t)
        index = int((t - origin) / self.width)
        while index >= self.max_bins:
            self._coarsen()
            index = int((t - origin) / self.width)
        admitted = self.admitted
        if index >= len(admitted):
            grow = index + 1 - len(admitted)
            admitted.extend([0] * grow)
            self.rejected.extend([0] * grow)
        if allowed:
            admitted[index] += 1
        else:
            self.rejected[index] += 1

    def _coarsen(self) -> None:
        self.width *= 2
        for counts in (self.admitted, self.rejected):
            merged = [sum(counts[i : i + 2]) for i in range(0, len(counts), 2)]
            counts[:] = merged

    def edges(self) -> list[float]:
        """Bin edges in epoch seconds (one more than there are bins)."""
        origin = (self.origin or 0.0) + self.offset
        return [origin + i * self.width for i in range(len(self.admitted) + 1)]


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted data (``q`` in 0..100)."""
    if not ordered:
        return 0.0
    rank = math.ceil(q / 100.0 * len(ordered))
    return ordered[min(len(ordered), max(rank, 1)) - 1]


@dataclass(frozen=True, slots=True)
class DelayStats:
    """Queueing delay a shaping policy added to the requests it admitted."""

    delayed: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, delays: array[float]) -> DelayStats:
        if not delays:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        ordered = sorted(delays)
        delayed = len(ordered) - bisect.bisect_right(ordered, 0.0)
        return cls(
            delayed,
            math.fsum(ordered) / len(ordered),
            percentile(ordered, 50),
            percentile(ordered, 95),
            percentile(ordered, 99),
            ordered[-1],
        )
