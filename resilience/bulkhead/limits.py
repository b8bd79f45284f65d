"""How an adaptive bulkhead moves its limit: gradient and AIMD.

Both follow the idea of Netflix's concurrency-limits and Envoy's adaptive
concurrency filter: latency is the signal.  While the dependency keeps up,
latency stays near its baseline and the limit may grow; when requests start
to queue inside it, latency rises and the limit shrinks, so excess load is
refused at our door instead of piling up in theirs.

An algorithm is a small object whose ``update`` maps (current limit, one
sample) to the next limit.  It reads no clock and takes no lock: the bulkhead
measures the latency with its injected clock and calls ``update`` under its
own lock, then clamps the answer to ``[min_limit, max_limit]``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

from resilience._validate import positive_number, positive_seconds, whole_number

__all__ = ["AIMD", "Gradient", "LimitAlgorithm"]


def _fraction(value: object, field: str, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{field} must be a number, got {value!r}")
    if not low < value <= high:
        raise ValueError(f"{field} must be in ({low}, {high}], got {value!r}")
    return float(value)


class LimitAlgorithm(ABC):
    """Maps the current limit and one completed call to the next limit."""

    @abstractmethod
    def update(self, limit: float, rtt: float, inflight: int, dropped: bool) -> float:
        """The next limit (unclamped).

        ``rtt`` is the call's latency in seconds, ``inflight`` how many calls
        were running when it started, ``dropped`` whether it ended in a
        timeout (the clearest overload signal).
        """


class AIMD(LimitAlgorithm):
    """Additive increase, multiplicative decrease (TCP Reno's rule).

    A call slower than ``latency_threshold`` or one that timed out cuts the
    limit by ``decrease``; otherwise, if the limit is actually being used
    (``inflight`` at least half of it), it grows by ``increase``.  Simple and
    robust, but you must know what "slow" means for the dependency.
    """

    __slots__ = ("decrease", "increase", "latency_threshold")

    def __init__(
        self, latency_threshold: float, *, decrease: float = 0.9, increase: float = 1.0
    ) -> None:
        self.latency_threshold = positive_seconds(latency_threshold, "latency_threshold")
        self.decrease = _fraction(decrease, "decrease", low=0.0, high=1.0)
        self.increase = positive_number(increase, "increase")

    def update(self, limit: float, rtt: float, inflight: int, dropped: bool) -> float:
        if dropped or rtt > self.latency_threshold:
            return limit * self.decrease
        if inflight * 2 >= limit:
            return limit + self.increase
        return limit

    def __repr__(self) -> str:
        return f"AIMD(latency_threshold={self.latency_threshold!r}, decrease={self.decrease!r})"


class Gradient(LimitAlgorithm):
    """Compare short-term latency with a long-term baseline; no threshold to guess.

    The baseline is an exponential moving average over about ``long_window``
    calls.  Each sample gives a gradient ``tolerance * baseline / rtt``
    clamped to ``[0.5, 1]``: 1 while latency is within ``tolerance`` of the
    baseline, smaller as calls slow down.  The target limit is
    ``limit * gradient + sqrt(limit)`` (the square root is headroom to probe
    for more capacity) and the limit moves a ``smoothing`` fraction of the way
    there.  A timed-out call counts as the worst gradient.  When the limit is
    not being used (``inflight`` under half of it) the limit stays put: an
    idle service says nothing about capacity.  If latency falls far below the
    baseline, the baseline decays faster so it can follow an improvement.
    """

    __slots__ = ("_alpha", "_baseline", "long_window", "smoothing", "tolerance")

    def __init__(
        self, *, tolerance: float = 1.5, smoothing: float = 0.2, long_window: int = 600
    ) -> None:
        if (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, int | float)
            or not math.isfinite(tolerance)
            or tolerance < 1
        ):
            raise ValueError(f"tolerance must be a finite number >= 1, got {tolerance!r}")
        self.tolerance = float(tolerance)
        self.smoothing = _fraction(smoothing, "smoothing", low=0.0, high=1.0)
        whole_number(long_window, "long_window")
        self.long_window = long_window
        self._alpha = 2.0 / (long_window + 1)
        self._baseline = 0.0

    @property
    def baseline(self) -> float:
        """The long-term latency estimate (0 before the first sample)."""
        return self._baseline

    def update(self, limit: float, rtt: float, inflight: int, dropped: bool) -> float:
        if dropped:
            gradient = 0.5
        else:
            if not (rtt > 0 and math.isfinite(rtt)):
                return limit
            baseline = self._baseline
            baseline = rtt if baseline == 0.0 else baseline + self._alpha * (rtt - baseline)
            if baseline > 2.0 * rtt:  # latency improved a lot: let the baseline follow
                baseline *= 0.95
            self._baseline = baseline
            if inflight * 2 < limit:
                return limit
            gradient = max(0.5, min(1.0, self.tolerance * baseline / rtt))
        target = limit * gradient + math.sqrt(limit)
        return limit + (target - limit) * self.smoothing

    def __repr__(self) -> str:
        return (
            f"Gradient(tolerance={self.tolerance!r}, smoothing={self.smoothing!r}, "
            f"long_window={self.long_window!r})"
        )
