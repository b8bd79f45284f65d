"""Token bucket, GCRA and leaky bucket: one float of state per key.

All three are the same machine seen from different sides.  A key's whole
state is one float ``s``: the time at which its bucket is full again (GCRA
calls it the *theoretical arrival time*; a leaky bucket's water level is
``(s - now) / interval``; a token bucket holds ``burst - (s - now) / interval``
tokens).  A request of cost ``c`` is admitted when ``now >= s - (burst - c) *
interval``, and moves ``s`` to ``max(s, now) + c * interval``.  One float per
key is what keeps idle keys small, and ``s <= now`` is exactly "back to full",
which is what the store uses to reclaim keys.

A clock that steps backwards (NTP, or hosts whose clocks disagree) can find
``s`` further ahead of ``now`` than any admission could have put it (an
empty bucket is ``s = now + burst * interval``).  ``s`` is then pulled back
to exactly that, "empty as of now", so nobody waits out the step: the
longest refusal stays ``cost * interval``.  A forward-moving clock never
gets there (a margin of a few ulps absorbs rounding), so its decisions are
exactly what they were.

The classes differ in their parameters and, for the leaky bucket in
``"shape"`` mode, in what an admission means: the request is queued and must
wait ``Decision.delay`` so that requests leave at the steady rate.
"""

from __future__ import annotations

from math import floor as _floor
from typing import ClassVar, Literal

from resilience.ratelimit.algorithms.base import (
    INF,
    Algorithm,
    check_count,
    check_period,
    wait_until,
)
from resilience.ratelimit.decision import Decision, ShapedDecision

_new = tuple.__new__  # builds a Decision without the NamedTuple __new__ wrapper (2x faster)
# ``remaining`` is floored with math.floor (~15 ns) rather than int() (~45 ns): the two agree
# on every value >= 0, and each negative one is clamped to 0 below.

__all__ = ["GCRA", "LeakyBucket", "TokenBucket"]

_ROUND = 1e-9  # tolerance when flooring the informational ``remaining`` count
_FLOAT_SLACK = 4.5e-16  # two float roundings per addition, relative to the state's magnitude
# Relative margin (2**-49: a few ulps) on top of the admission's own slack before a state
# counts as ahead of anything an admission can produce: rounding, nothing more.
_ULPS = 2.0**-49


class _VirtualTime(Algorithm):
    """Shared transition for the one-float algorithms."""

    __slots__ = ("_burst", "_interval", "_shape", "_slack", "_span")

    _burst: int
    _interval: float
    _shape: bool
    _span: float  # burst * interval: how far ahead of now an empty bucket's state is
    _slack: float  # (burst - 1) * _FLOAT_SLACK: the rounding allowance per unit of |state|

    def _setup(self, limit: object, period: object, burst: object, burst_field: str) -> None:
        self.limit = check_count(limit, "limit")
        self.period = check_period(period)
        self._burst = self.limit if burst is None else check_count(burst, burst_field)
        self._interval = self.period / self.limit
        self._span = self._burst * self._interval
        self._slack = (self._burst - 1) * _FLOAT_SLACK
        self._shape = False

    @property
    def capacity(self) -> float:
        return self._burst

    @property
    def horizon(self) -> float:
        """The time to refill the whole bucket (``capacity`` emission intervals)."""
        return self._burst * self._interval

    @property
    def interval(self) -> float:
        """Seconds per unit of cost (the emission interval)."""
        return self._interval

    def decide(self, state: float | None, now: float, cost: float) -> tuple[float | None, Decision]:
        interval = self._interval
        burst = self._burst
        if state is None or state <= now:
            if cost > burst:
                return state, self.reject_forever(burst, 0.0)
            full_at = now + cost * interval
            remaining = _floor(burst - cost + _ROUND)
            return full_at, _new(Decision, (True, self.limit, remaining, 0.0, full_at - now))
        if cost > burst:
            state = self.behind(state, now)
            return state, self.reject_forever(
                int(burst - (state - now) / interval + _ROUND), state - now
            )
        # ``state`` grew by repeated additions of ``interval``: up to ``burst - 1`` roundings
        # of its magnitude since the bucket was last full.  Without this slack a burst sent
        # at one instant could lose its last request to float noise (GCRA(7, 0.1) admitted 6
        # at once).  The slack is part of the threshold, so retry_after stays the exact
        # shortest wait; it is zero for a burst of 1.  Mirrored in the Lua.
        allow_at = (
            state - (burst - cost) * interval - (state if state > 0 else -state) * self._slack
        )
        if now >= allow_at:
            full_at = state + cost * interval
            remaining = _floor(burst - (full_at - now) / interval + _ROUND)
            if remaining < 0:
                remaining = 0
            if self._shape and state > now:
                shaped = _new(ShapedDecision, (True, self.limit, remaining, 0.0, full_at - now))
                shaped.delay = state - now
                return full_at, shaped
            return full_at, _new(Decision, (True, self.limit, remaining, 0.0, full_at - now))
        # Rejected.  Further ahead than an empty bucket, which no admission produces (so
        # the admitted path above never needs this test): a clock that stepped back.
        if state - now > self._span:
            state = self.behind(state, now)
            allow_at = (
                state - (burst - cost) * interval - (state if state > 0 else -state) * self._slack
            )
        remaining = _floor(burst - (state - now) / interval + _ROUND)
        retry_after = allow_at - now
        if now + retry_after < allow_at:  # rare: rounding; walk up to the exact float
            retry_after = wait_until(now, allow_at)
        return state, _new(
            Decision,
            (
                False,
                self.limit,
                remaining if remaining > 0 else 0,
                retry_after,
                state - now,
            ),
        )

    def settle(self, state: float | None, now: float) -> float | None:
        if state is not None and state - now > self._span:
            return self.behind(state, now)
        return state

    def behind(self, state: float, now: float) -> float:
        """``state`` seen from a clock that stepped back: never more than empty as of ``now``."""
        span = self._span
        size = abs(state)
        if state - now > span + size * self._slack + (size + span) * _ULPS:
            return now + span
        return state  # within the admission's slack of empty: what a forward clock produces

    def full_at(self, state: float | None) -> float:
        return -INF if state is None else state

    def refund(self, state: float | None, now: float, cost: float) -> float | None:
        """Give back ``cost`` admitted earlier (a cancelled shaped waiter)."""
        if state is None:
            return None
        back = state - cost * self._interval
        return back if back > now else None


class _Bursty(_VirtualTime):
    """Parameters shared by the token bucket and GCRA: a rate and a burst."""

    __slots__ = ()

    def __init__(self, limit: int, period: float = 1.0, burst: int | None = None) -> None:
        self._setup(limit, period, burst, "burst")

    @property
    def burst(self) -> int:
        return self._burst

    def params(self) -> dict[str, object]:
        return {"limit": self.limit, "period": self.period, "burst": self._burst}


class TokenBucket(_Bursty):
    """Refill ``limit`` tokens per ``period`` into a bucket holding ``burst`` (default ``limit``).

    Admits at most ``burst + limit * dt / period`` cost in any interval ``dt``.
    """

    kind: ClassVar[str] = "token-bucket"
    __slots__ = ()


class GCRA(_Bursty):
    """Generic cell rate algorithm: one timestamp (the TAT) per key.

    ``burst`` requests may arrive back to back; after that they are spaced by
    ``period / limit``.  Same admission set as :class:`TokenBucket`.
    """

    kind: ClassVar[str] = "gcra"
    __slots__ = ()


class LeakyBucket(_VirtualTime):
    """A bucket of ``capacity`` (default ``limit``) that leaks ``limit`` per ``period``.

    ``mode="police"`` meters: a request that would overflow is rejected, the
    others pass at once.  ``mode="shape"`` queues: each admitted request gets
    ``Decision.delay`` so that requests leave at the steady rate, and only a
    request that would overflow the queue is rejected.
    """

    kind: ClassVar[str] = "leaky-bucket"
    __slots__ = ("mode",)

    mode: Literal["police", "shape"]

    def __init__(
        self,
        limit: int,
        period: float = 1.0,
        capacity: int | None = None,
        mode: Literal["police", "shape"] = "police",
    ) -> None:
        self._setup(limit, period, capacity, "capacity")
        if mode not in ("police", "shape"):
            raise ValueError(f"mode must be 'police' or 'shape', got {mode!r}")
        self.mode = mode
        self._shape = mode == "shape"

    def params(self) -> dict[str, object]:
        return {
            "limit": self.limit,
            "period": self.period,
            "capacity": self._burst,
            "mode": self.mode,
        }
