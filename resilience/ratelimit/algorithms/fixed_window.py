"""Fixed window: a counter per aligned window of ``period`` seconds.

Cheap and easy to explain, and famous for its boundary burst: a client can
spend the whole limit at the end of one window and again at the start of the
next, so ``2 * limit`` pass within a few moments.  ``resilience replay`` shows
it next to the sliding log and GCRA.

After a clock steps back before the start of a key's window, that window is
re-anchored to start at the new ``now`` (count kept): the key waits at most
one period, and its windows are aligned again once the re-anchored one ends.
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

_new = tuple.__new__  # builds a Decision without the NamedTuple __new__ wrapper (2x faster)

__all__ = ["FixedWindow"]


class FixedWindow(Algorithm):
    """At most ``limit`` cost per window ``[k*period, (k+1)*period)`` of a forward clock."""

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
        # state = [window end, cost used, window start]; the bounds are cached so the
        # common case (same window) needs no floor division.
        limit = self.limit
        if state is not None and state[2] <= now < state[0]:
            end = state[0]
            used = state[1]
            start = state[2]
        elif state is not None and now < state[2]:
            # A clock behind the newest window (stepped back, or another host's): that
            # window restarts now with its count (never a rebuilt, forgiven older one),
            # so the wait is at most one period, however far the clock went back.
            start = state[2] = now
            end = state[0] = now + self.period
            used = state[1]
        else:
            window = window_index(now, self.period)
            start = window * self.period
            end = (window + 1) * self.period
            used = 0
        if cost > limit:
            return state, _new(
                Decision, (False, limit, int(limit - used), INF, end - now if used else 0.0)
            )
        if used + cost <= limit:
            if state is None:
                state = [end, used + cost, start]
            else:
                state[0] = end
                state[1] = used + cost
                state[2] = start
            return state, _new(Decision, (True, limit, int(limit - used - cost), 0.0, end - now))
        retry_after = end - now
        if now + retry_after < end:  # rare: rounding; walk up to the exact float
            retry_after = wait_until(now, end)
        return state, _new(Decision, (False, limit, int(limit - used), retry_after, end - now))

    def settle(self, state: list[float] | None, now: float) -> list[float] | None:
        if state is not None and now < state[2]:  # as decide does
            state[2] = now
            state[0] = now + self.period
        return state

    def full_at(self, state: list[float] | None) -> float:
        return -INF if state is None else state[0]
