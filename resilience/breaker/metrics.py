"""Running totals of the closed breaker's window, O(1) amortised work per call.

Both windows number recorded calls with a sequence (``tick``) and keep
totals that are adjusted as calls enter and leave; nothing rescans history.

* :class:`CountMetrics` (last N calls) keeps only the sequence numbers of
  failed and slow calls, in deques pruned from the left (so each holds at
  most N entries).  A plain success is
  one ``next()`` on an ``itertools.count``, which is atomic, so the closed
  hot path needs no lock.
* :class:`TimeMetrics` (last T seconds) keeps per-bucket counts in a ring
  and running totals; moving to a new bucket subtracts the buckets that fall
  out.  Every update happens under the state store's lock.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable
from typing import ClassVar, Protocol

from resilience.breaker.windows import CountWindow, TimeWindow, Window

__all__ = ["CountMetrics", "TimeMetrics", "WindowMetrics", "new_metrics"]


class WindowMetrics(Protocol):
    """The closed state's running totals."""

    lock_free: ClassVar[bool]
    """True when a plain success may be counted by ``tick()`` alone, without the lock."""

    tick: Callable[[], int]
    """Numbers the next recorded call (1, 2, ...); atomic."""

    def add(self, seq: int, failed: bool, slow: bool, now: float) -> tuple[int, int, int]:
        """Record call ``seq`` (under the lock) and return the new totals."""
        ...

    def totals(self, latest: int, now: float) -> tuple[int, int, int]:
        """``(calls, failures, slow_calls)`` in the window (under the lock)."""
        ...

    moved: bool
    """Set when calls left the window; whoever judges the totals clears it."""


class CountMetrics:
    """The last ``size`` calls."""

    __slots__ = ("_failures", "_slow", "moved", "size", "tick")

    lock_free: ClassVar[bool] = True

    def __init__(self, size: int) -> None:
        self.size = size
        self.tick: Callable[[], int] = itertools.count(1).__next__
        self._failures: deque[int] = deque()
        self._slow: deque[int] = deque()
        self.moved = False  # stays False: calls only leave when newer ones push them out

    def add(self, seq: int, failed: bool, slow: bool, now: float) -> tuple[int, int, int]:
        if failed:
            self._failures.append(seq)
        if slow:
            self._slow.append(seq)
        return self.totals(seq, now)

    def totals(self, latest: int, now: float) -> tuple[int, int, int]:
        floor = latest - self.size
        failures, slow = self._failures, self._slow
        while failures and failures[0] <= floor:
            failures.popleft()
        while slow and slow[0] <= floor:
            slow.popleft()
        return min(latest, self.size), len(failures), len(slow)


class TimeMetrics:
    """The calls of the last ``buckets`` buckets of ``width`` seconds."""

    __slots__ = (
        "_calls",
        "_failures",
        "_head",
        "_slot",
        "_slow",
        "buckets",
        "calls",
        "failures",
        "moved",
        "slow",
        "tick",
        "width",
    )

    lock_free: ClassVar[bool] = False

    def __init__(self, window: TimeWindow, start: float) -> None:
        self.width = window.width
        self.buckets = n = window.buckets
        self._calls = [0] * n
        self._failures = [0] * n
        self._slow = [0] * n
        # No bucket until the first record (as in Redis, where the window is written
        # then): a clock that stepped back since the state began records where it is.
        self._head = _NO_BUCKET
        self._slot = 0
        self.tick: Callable[[], int] = itertools.count(1).__next__
        self.calls = self.failures = self.slow = 0
        self.moved = False

    def _roll(self, k: int) -> int:
        """Advance to bucket ``k`` (> head), dropping the buckets that leave the window."""
        head = self._head
        n = self.buckets
        if k - head >= n:
            self._calls = [0] * n
            self._failures = [0] * n
            self._slow = [0] * n
            self.calls = self.failures = self.slow = 0
        else:
            calls, failures, slow = self._calls, self._failures, self._slow
            for j in range(head + 1, k + 1):
                i = j % n
                self.calls -= calls[i]
                self.failures -= failures[i]
                self.slow -= slow[i]
                calls[i] = failures[i] = slow[i] = 0
        self._head = k
        self._slot = slot = k % n
        self.moved = True
        return slot

    def add(self, seq: int, failed: bool, slow: bool, now: float) -> tuple[int, int, int]:
        k = math.floor(now / self.width)
        # the same bucket, or a clock that stepped back: stay in the current bucket
        i = self._slot if k <= self._head else self._roll(k)
        self._calls[i] += 1
        self.calls += 1
        if failed:
            self._failures[i] += 1
            self.failures += 1
        if slow:
            self._slow[i] += 1
            self.slow += 1
        return self.calls, self.failures, self.slow

    def totals(self, latest: int, now: float) -> tuple[int, int, int]:
        """The totals as of ``now``, without moving the window (only records move it).

        So a reading at a later time cannot push the next record of a clock that
        stepped back into a newer bucket than the record's own (Redis reads the same way).
        """
        k = math.floor(now / self.width)
        head = self._head
        if k <= head:
            return self.calls, self.failures, self.slow
        n = self.buckets
        if k - head >= n:
            return 0, 0, 0
        calls, failures, slow = self.calls, self.failures, self.slow
        for j in range(head + 1, k + 1):
            i = j % n
            calls -= self._calls[i]
            failures -= self._failures[i]
            slow -= self._slow[i]
        return calls, failures, slow


_NO_BUCKET = -(1 << 62)  # before any bucket index a clock can produce


def bucket_index(t: float, width: float) -> int:
    """The bucket that instant ``t`` falls in: ``floor(t / width)``."""
    return math.floor(t / width)


def new_metrics(window: Window, start: float) -> WindowMetrics:
    """Fresh, empty totals for ``window`` (a time window's first bucket is its first record's)."""
    if isinstance(window, CountWindow):
        return CountMetrics(window.size)
    return TimeMetrics(window, start)
