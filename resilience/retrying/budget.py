"""``RetryBudget``: retries as a fraction of requests, shared by every call.

Per-call retry limits do not stop a retry storm: when a dependency is down,
every caller retries ``attempts - 1`` times and the load on it multiplies.  A
budget (Finagle's and gRPC's idea) caps retries across *all* calls: over any
``window`` seconds, retries are at most ``ratio * requests`` plus a small
reserve of ``min_per_second * window`` so that a quiet service can still retry.

The window slides in ``buckets`` steps.  The check is conservative, so the
bound holds for every window of exactly ``window`` seconds, not just for
bucket-aligned ones: requests are counted only in buckets that lie wholly
inside the last ``window`` seconds, and retries in every bucket that touches
it.  The cost is that a retry can be refused slightly early (by up to one
bucket's worth of requests), never that one is allowed too late.
"""

from __future__ import annotations

import math
import threading

from resilience import _validate
from resilience.clock import Clock, now_function, resolve_clock

__all__ = ["RetryBudget"]


class RetryBudget:
    """A thread-safe budget of retries, shared by any number of retry policies.

    ``deposit()`` records a request (every call through a retry policy that
    uses this budget makes one); ``try_spend()`` asks for one retry and
    returns whether it is allowed.  A retry is allowed when, counting it,
    ``retries <= ratio * requests + min_per_second * window`` over the last
    ``window`` seconds.
    """

    __slots__ = (
        "_current",
        "_lock",
        "_now",
        "_requests",
        "_reserve",
        "_retries",
        "_slots",
        "_width",
        "buckets",
        "min_per_second",
        "ratio",
        "window",
    )

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        window: float = 10.0,
        *,
        buckets: int = 10,
        clock: Clock | None = None,
    ) -> None:
        self.ratio = _validate.non_negative_number(ratio, "ratio")
        self.min_per_second = _validate.non_negative_number(min_per_second, "min_per_second")
        self.window = _validate.non_negative_number(window, "window")
        if self.window == 0:
            raise ValueError("window must be positive, got 0")
        self.buckets = _validate.whole_number(buckets, "buckets")
        self._reserve = self.min_per_second * self.window
        self._width = self.window / buckets
        self._slots = buckets + 1  # the current bucket plus `buckets` older ones
        self._requests = [0] * self._slots
        self._retries = [0] * self._slots
        self._current = 0
        self._now = now_function(resolve_clock(clock))
        self._lock = threading.Lock()

    def _roll(self, now: float) -> int:
        """Move to the bucket holding ``now``, zeroing the ones that fell out."""
        return self._roll_to(math.floor(now / self._width))

    def _roll_to(self, index: int) -> int:
        current = self._current
        if index != current:
            slots = self._slots
            if index - current >= slots or index < current:
                for i in range(slots):
                    self._requests[i] = 0
                    self._retries[i] = 0
            else:
                for j in range(current + 1, index + 1):
                    self._requests[j % slots] = 0
                    self._retries[j % slots] = 0
            self._current = index
        return index % self._slots

    def deposit(self, requests: int = 1) -> None:
        """Record ``requests`` new requests (calls), which earn retries."""
        index = math.floor(self._now() / self._width)
        with self._lock:
            if index == self._current:  # the common case: still in the same bucket
                self._requests[index % self._slots] += requests
            else:
                self._requests[self._roll_to(index)] += requests

    def try_spend(self) -> bool:
        """Take one retry if the budget allows it; ``False`` means do not retry."""
        now = self._now()
        with self._lock:
            slot = self._roll(now)
            allowed = self.ratio * self._requests_counted(slot) + self._reserve
            if self._retries_counted() + 1 > allowed:
                return False
            self._retries[slot] += 1
            return True

    def available(self) -> float:
        """How many retries the budget would allow right now."""
        now = self._now()
        with self._lock:
            slot = self._roll(now)
            room = self.ratio * self._requests_counted(slot) + self._reserve
            return max(0.0, room - self._retries_counted())

    def _requests_counted(self, slot: int) -> int:
        # Every bucket but the oldest: those lie wholly inside the last window.
        oldest = (slot + 1) % self._slots
        return sum(self._requests) - self._requests[oldest]

    def _retries_counted(self) -> int:
        return sum(self._retries)

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio!r}, min_per_second={self.min_per_second!r}, "
            f"window={self.window!r})"
        )
