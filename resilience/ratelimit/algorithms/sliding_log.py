"""Sliding-window log: exact, at the price of one entry per admitted request.

Keeps the time (and cost) of every admitted request still inside the
window, so at most ``limit`` cost is admitted in *any* interval of
``period`` seconds.  Memory per key is O(limit); prefer the sliding-window
counter or GCRA for large limits.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from typing import ClassVar

from resilience.ratelimit.algorithms.base import (
    INF,
    Algorithm,
    check_count,
    check_period,
    wait_until,
)
from resilience.ratelimit.decision import Decision

_new = tuple.__new__  # builds a Decision without the NamedTuple __new__ wrapper (2x faster)

__all__ = ["SlidingWindowLog"]


class _Log:
    """Admitted entries still in the window, oldest first, and their total cost."""

    __slots__ = ("costs", "odd", "times", "total")

    def __init__(self) -> None:
        self.times: deque[float] = deque()
        self.costs: deque[float] = deque()
        self.total: float = 0
        self.odd = 0  # entries whose cost is not 1: while 0, a rejection needs no scan


class SlidingWindowLog(Algorithm):
    """At most ``limit`` cost in any interval of ``period`` seconds, exactly."""

    kind: ClassVar[str] = "sliding-log"
    __slots__ = ()

    def __init__(self, limit: int, period: float = 1.0) -> None:
        self.limit = check_count(limit, "limit")
        self.period = check_period(period)

    @property
    def capacity(self) -> float:
        return self.limit

    def decide(self, state: _Log | None, now: float, cost: float) -> tuple[_Log | None, Decision]:
        period = self.period
        limit = self.limit
        if state is None:
            if cost > limit:
                return None, _new(Decision, (False, limit, limit, INF, 0.0))
            state = _Log()
        times = state.times
        costs = state.costs
        if times and times[-1] > now:
            _restamp(times, now)
        # An entry admitted at t counts during [t, t + period).
        while times and times[0] + period <= now:
            times.popleft()
            gone = costs.popleft()
            state.total -= gone
            if gone != 1:
                state.odd -= 1
        if not times:
            state.total = 0  # drop the float residue of fractional costs with the last entry
        total = state.total
        if cost > limit:
            reset = times[-1] + period - now if times else 0.0
            return state, _new(Decision, (False, limit, int(limit - total), INF, reset))
        if total + cost <= limit:
            times.append(now)
            costs.append(cost)
            state.total = total + cost
            if cost != 1:
                state.odd += 1
            return state, _new(Decision, (True, limit, int(limit - total - cost), 0.0, period))
        if not state.odd:
            need = total + cost - limit  # cost that must leave the window first
            # Every entry costs 1: the first ceil(need) entries must go.  O(1), so a
            # client hammering a key with a large limit cannot make rejections scan it.
            allow_at = times[math.ceil(need) - 1] + period
        else:
            # Replay the running total as the pops above will compute it (the same
            # subtractions in the same order, zero once the log is empty), so a retry
            # at allow_at is admitted even when fractional costs leave float residue.
            left = total
            last = len(times) - 1
            allow_at = INF
            for i, (t, c) in enumerate(zip(times, costs, strict=True)):
                left = left - c if i < last else 0
                if left + cost <= limit:
                    allow_at = t + period
                    break
        retry_after = allow_at - now
        if now + retry_after < allow_at:  # rare: rounding; walk up to the exact float
            retry_after = wait_until(now, allow_at)
        return state, _new(
            Decision,
            (False, limit, int(limit - total), retry_after, times[-1] + period - now),
        )

    def settle(self, state: _Log | None, now: float) -> _Log | None:
        if state is not None and state.times and state.times[-1] > now:
            _restamp(state.times, now)
        return state

    def full_at(self, state: _Log | None) -> float:
        if state is None or not state.times:
            return -INF
        return state.times[-1] + self.period


def _restamp(times: deque[float], now: float) -> None:
    """Entries stamped after ``now`` (a clock that stepped back, or another host's) count from now.

    The log stays sorted, so the front is always the oldest and retry_after stays
    exact; no entry counts longer than a period from ``now``, so nobody waits out
    the step.  A forward clock never gets here.
    """
    moved = 0
    while times and times[-1] > now:
        times.pop()
        moved += 1
    times.extend(itertools.repeat(now, moved))
