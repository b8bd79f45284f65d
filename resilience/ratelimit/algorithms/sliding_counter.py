"""Sliding-window counter: the sliding log's accuracy at a fixed-window's cost.

The window of ``period`` seconds is cut into ``buckets`` aligned sub-buckets
of ``period / buckets`` seconds.  The estimate of what the window holds at
``now`` is the running total of the ``buckets`` most recent sub-buckets plus
the one before them weighted by how much of it still overlaps the window
(``buckets=1`` is the classic "previous window weighted" counter).  More
buckets make the estimate finer; work per decision stays O(1) amortised
because the total is kept running, not recounted.

A clock that steps back before the newest sub-bucket relabels it (and those
before it) as the stepped clock's: nothing counted is dropped, and the
longest refusal stays the period plus the rest of the current sub-bucket.
"""

from __future__ import annotations

from math import floor as _math_floor
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

__all__ = ["MAX_BUCKETS", "SlidingWindowCounter"]

MAX_BUCKETS = 10_000


class _Counter:
    """Ring of ``buckets + 1`` sub-bucket counts ending at ``index``."""

    __slots__ = ("cur", "end", "index", "last", "reset_at", "ring", "start", "total", "wslot")

    def __init__(self, slots: int, index: int, width: float, buckets: int) -> None:
        self.ring: list[float] = [0] * slots
        self.total: float = 0  # sum of the `buckets` newest sub-buckets (not the weighted one)
        self.last = index  # newest sub-bucket with a non-zero count
        self.move(index, width, buckets, slots)

    def move(self, index: int, width: float, buckets: int, slots: int) -> None:
        """Make ``index`` current; cache what the common case would otherwise recompute."""
        self.index = index
        self.start = index * width  # bounds: no floor division while still in this bucket
        self.end = (index + 1) * width
        self.cur = index % slots  # ring slots of the current and the weighted bucket
        self.wslot = (index - buckets) % slots
        self.reset_at = (index + buckets + 1) * width  # full again if admitted now


class SlidingWindowCounter(Algorithm):
    """Approximate sliding window with ``buckets`` sub-buckets and a running total."""

    kind: ClassVar[str] = "sliding-counter"
    __slots__ = ("_slots", "_width", "buckets")

    def __init__(self, limit: int, period: float = 1.0, buckets: int = 1) -> None:
        self.limit = check_count(limit, "limit")
        self.period = check_period(period)
        self.buckets = check_count(buckets, "buckets")
        if self.buckets > MAX_BUCKETS:  # each key holds buckets + 1 counts
            raise ValueError(f"buckets must be at most {MAX_BUCKETS}, got {buckets!r}")
        self._width = self.period / self.buckets
        self._slots = self.buckets + 1

    @property
    def capacity(self) -> float:
        return self.limit

    @property
    def horizon(self) -> float:
        """The period plus one sub-bucket: the weighted sub-bucket is remembered that long."""
        return self.period + self._width

    def params(self) -> dict[str, object]:
        return {"limit": self.limit, "period": self.period, "buckets": self.buckets}

    def _advance(self, state: _Counter, index: int) -> None:
        """Move ``state`` forward to sub-bucket ``index`` (at most ``buckets + 1`` steps)."""
        n = self.buckets
        slots = self._slots
        ring = state.ring
        current = state.index
        if index - current > n:
            for i in range(slots):
                ring[i] = 0
            state.total = 0
            state.move(index, self._width, n, slots)
            return
        while current < index:
            state.total -= ring[(current - n + 1) % slots]  # becomes the weighted bucket
            current += 1
            ring[current % slots] = 0  # reuses the slot of the bucket that left
        state.move(current, self._width, n, slots)

    def _rebase(self, state: _Counter, index: int) -> None:
        """Relabel the newest sub-bucket as ``index`` (earlier), keeping every count.

        A clock that stepped back then sees the counts where a forward clock would
        have put them, so its refusals last at most what they would have without
        the step (the period plus the rest of the sub-bucket).  O(buckets), rare.
        """
        n = self.buckets
        slots = self._slots
        delta = state.index - index
        shift = delta % slots
        ring = state.ring
        ring[:] = ring[shift:] + ring[:shift]
        state.last -= delta
        state.move(index, self._width, n, slots)

    def _threshold(self, index: int, weighted: float, total: float, cost: float) -> float:
        """Earliest time within sub-bucket ``index`` at which ``cost`` fits (INF if none)."""
        room = self.limit - cost - total
        if room < 0:
            return INF
        width = self._width
        if weighted <= room:
            return index * width
        return index * width + width * (1.0 - room / weighted)

    def decide(
        self, state: _Counter | None, now: float, cost: float
    ) -> tuple[_Counter | None, Decision]:
        limit = self.limit
        width = self._width
        if state is not None and state.start <= now < state.end:
            index = state.index  # the common case: still in the current sub-bucket
        else:
            index = window_index(now, width)
            if state is None:
                if cost > limit:
                    return None, _new(Decision, (False, limit, limit, INF, 0.0))
                state = _Counter(self._slots, index, width, self.buckets)
            elif index > state.index:
                self._advance(state, index)
            else:  # a clock that went backwards: the counts move to its sub-bucket
                self._rebase(state, index)
        ring = state.ring
        weighted = ring[state.wslot]
        total = state.total
        start = state.start
        estimate = weighted * (1.0 - (now - start) / width) + total if weighted else total
        if cost > limit:
            return state, _new(
                Decision,
                (False, limit, _floor(limit - estimate), INF, self._reset(state, now)),
            )
        room = limit - cost - total
        # Admit when weighted * (1 - phase) <= room, written as a time threshold so that
        # retry_after (from _allow_at, the same expression) is exact.
        if room >= weighted or (room >= 0 and now >= start + width * (1.0 - room / weighted)):
            ring[state.cur] += cost
            state.total = total + cost
            state.last = index
            remaining = _math_floor(limit - estimate - cost + 1e-9)  # int() agrees: clamped
            return state, _new(
                Decision,
                (
                    True,
                    limit,
                    remaining if remaining > 0 else 0,
                    0.0,
                    state.reset_at - now,
                ),
            )
        # Rejected.  If the cost fits within this sub-bucket, the threshold above is the
        # answer (what _allow_at's first step computes); else simulate the buckets ahead.
        if room >= 0:
            allow_at = start + width * (1.0 - room / weighted)
        else:
            allow_at = self._allow_at(state, cost)
        retry_after = allow_at - now
        if now + retry_after < allow_at:  # rare: rounding; walk up to the exact float
            retry_after = wait_until(now, allow_at)
        reset = (state.last + self.buckets + 1) * width - now  # total or weighted is non-zero
        remaining = _math_floor(limit - estimate + 1e-9)  # int() agrees: clamped
        return state, _new(
            Decision,
            (
                False,
                limit,
                remaining if remaining > 0 else 0,
                retry_after,
                reset if reset > 0.0 else 0.0,
            ),
        )

    def settle(self, state: _Counter | None, now: float) -> _Counter | None:
        if state is not None and now < state.start:
            index = window_index(now, self._width)
            if index < state.index:  # as decide does
                self._rebase(state, index)
        return state

    def _reset(self, state: _Counter, now: float) -> float:
        at = self.full_at(state)
        return at - now if at > now else 0.0

    def _allow_at(self, state: _Counter, cost: float) -> float:
        """Simulate sub-buckets ahead (no arrivals) until ``cost`` fits; O(buckets)."""
        n = self.buckets
        slots = self._slots
        ring = state.ring
        index = state.index
        total = state.total
        weighted = ring[(index - n) % slots]
        for step in range(n + 1):
            if step:
                weighted = ring[(index - n + 1) % slots]
                total -= weighted
                index += 1
            at = self._threshold(index, weighted, total, cost)
            if at < INF:
                return at
        return (index + 1) * self._width  # unreachable while cost <= limit

    def full_at(self, state: _Counter | None) -> float:
        if state is None:
            return -INF
        if not state.total and not state.ring[(state.index - self.buckets) % self._slots]:
            return -INF
        return (state.last + self.buckets + 1) * self._width


def _floor(value: float) -> int:
    """Floor of a count estimate, clamped at zero, tolerant of rounding."""
    whole = int(value + 1e-9)
    return whole if whole > 0 else 0
