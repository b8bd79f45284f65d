"""Which recent calls the closed breaker judges: the last N calls, or the last T seconds.

Plain validated configuration; the running totals live in
:mod:`resilience.breaker.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass

from resilience._validate import positive_seconds, whole_number

__all__ = ["CountWindow", "TimeWindow", "Window"]

MAX_BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class CountWindow:
    """The last ``size`` recorded calls (ignored calls do not count)."""

    size: int = 100

    def __post_init__(self) -> None:
        whole_number(self.size, "size")


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The calls recorded in the last ``seconds``, kept in ``buckets`` equal slices.

    The window slides a whole bucket at a time: it covers the current (partly
    elapsed) bucket and the ``buckets - 1`` before it, so between
    ``seconds * (buckets - 1) / buckets`` and ``seconds`` of history.  More
    buckets slide more smoothly and cost a little more memory, never more
    work per call.
    """

    seconds: float = 60.0
    buckets: int = 10

    def __post_init__(self) -> None:
        seconds = positive_seconds(self.seconds, "seconds")
        whole_number(self.buckets, "buckets")
        if self.buckets > MAX_BUCKETS:
            raise ValueError(f"buckets must be at most {MAX_BUCKETS}, got {self.buckets!r}")
        object.__setattr__(self, "seconds", seconds)

    @property
    def width(self) -> float:
        """Seconds per bucket."""
        return self.seconds / self.buckets


Window = CountWindow | TimeWindow
