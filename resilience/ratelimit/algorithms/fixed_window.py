"""Fixed window: a counter per aligned window of ``period`` seconds.

Cheap and easy to explain, and famous for its boundary burst: a client can
spend the whole limit at the end of one window and again at the start of the
next, so ``2 * limit`` pass within a few moments.  ``resilience replay`` shows
it next to the sliding log and GCRA.
"""

from __future__ import annotations

from typing import ClassVar

from resilience.ratelimit.algorithms.base import (
    INF,
    Algorithm,
    check_count,
    check_period,
    wait_until,
    window_index,
)
from resilience.ratelimit.decision import Decision

__all__ = ["FixedWindow"]


class FixedWindow(Algorithm):
    """At most ``limit`` cost per window ``[k*period, (k+1)*period)`` of the clock."""

    kind: ClassVar[str] = "fixed-window"
    __slots__ = ()

    def __init__(self, limit: int, period: float = 1.0) -> None:
        self.limit = check_count(limit, "limit")
        self.period = check_period(period)

    @property
    def capacity(self) -> float:
        return self.limit

    def decide(
        self, state: list[float] | None, now: float, cost: float
    ) -> tuple[list[float] | None, Decision]:
        period = self.period
        window = window_index(now, period)
        end = (window + 1) * period
        used = state[1] if state is not None and state[0] == window else 0
        limit = self.limit
        if cost > limit:
            return state, Decision(False, limit, int(limit - used), INF, end - now if used else 0.0)
        if used + cost <= limit:
            if state is None:
                state = [window, cost]
            else:
                state[0] = window
                state[1] = used + cost
            return state, Decision(True, limit, int(limit - used - cost), 0.0, end - now)
        return state, Decision(False, limit, int(limit - used), wait_until(now, end), end - now)

    def full_at(self, state: list[float] | None) -> float:
        return -INF if state is None else (state[0] + 1) * self.period
