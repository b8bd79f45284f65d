"""What every rate-limiting algorithm provides, and the arithmetic they share.

An algorithm is plain validated configuration plus a *transition function*:
``decide(state, now, cost) -> (state, Decision)``.  It reads no clock, never
sleeps and does no I/O; the store owns the state and calls it under its lock.
``state`` is ``None`` for a key the store has never seen (or reclaimed): by
construction that means "full capacity", so reclaiming a key that is back to
full changes no future decision.  Multi-field states are small mutable
objects updated in place (no allocation on the hot path); they are only ever
touched under the store's lock.

Exactness: every algorithm decides "admit" as ``now >= allow_at`` where
``allow_at`` depends only on the state and the cost, and reports
``retry_after`` as the smallest float with ``now + retry_after >= allow_at``.
So a rejected request retried alone exactly ``retry_after`` later is admitted,
without epsilons.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from resilience import _validate
from resilience.ratelimit.decision import Decision

_new = tuple.__new__  # builds a Decision without the NamedTuple __new__ wrapper (2x faster)

__all__ = [
    "Algorithm",
    "check_count",
    "check_period",
    "wait_until",
    "window_index",
]

INF = math.inf


def check_count(value: object, field: str) -> int:
    """Validate a positive whole number (limit, burst, capacity, buckets)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and value >= 1:
        return int(value)  # "limit=100.0" from a parsed rate
    return _validate.whole_number(value, field)


def check_period(value: object, field: str = "period") -> float:
    """Validate a positive, finite duration in seconds."""
    return _validate.positive_seconds(value, field)


def check_cost(value: object) -> float:
    """Validate a request cost: positive and finite."""
    _validate.positive_number(value, "cost")
    return value  # type: ignore[return-value]  # as given: an int cost stays an int


def wait_until(now: float, target: float) -> float:
    """Smallest ``d >= 0`` with ``now + d >= target`` in floating point."""
    delay = target - now
    if delay <= 0.0:
        return 0.0
    while now + delay < target:
        delay = math.nextafter(delay, INF)
    return delay


def window_index(now: float, width: float) -> int:
    """Index ``w`` of the aligned window holding ``now``: ``w*width <= now < (w+1)*width``.

    ``floor(now / width)`` can be off by one at a boundary because of
    rounding; the boundary products decide, so every caller agrees with
    ``wait_until(now, (w + 1) * width)``.
    """
    w = math.floor(now / width)
    if now >= (w + 1) * width:
        return w + 1
    if now < w * width:
        return w - 1
    return w


class Algorithm(ABC):
    """Validated configuration plus a pure transition function."""

    kind: ClassVar[str] = "algorithm"
    __slots__ = ("limit", "period")

    limit: int
    period: float

    @property
    @abstractmethod
    def capacity(self) -> float:
        """The largest cost a single request can ever be admitted with."""

    @property
    def horizon(self) -> float:
        """Seconds after which a key that spent its whole capacity at once is full again.

        What a client can plan on: ``capacity`` at once, every ``horizon``
        seconds, is always admitted (the RateLimit-Policy header's window).  It is
        also the furthest ``full_at`` lies after ``now`` on a clock that only moves
        forward: what :meth:`settle` and a full memory store rely on.
        """
        return self.period

    @abstractmethod
    def decide(self, state: Any, now: float, cost: float) -> tuple[Any, Decision]:
        """Return the new state (``None``: nothing to store) and the decision."""

    @abstractmethod
    def full_at(self, state: Any) -> float:
        """The time from which ``state`` is equivalent to "never seen" (full)."""

    def settle(self, state: Any, now: float) -> Any:
        """``state`` as a decision at ``now`` would see it: a clock that stepped back moves
        what lies further ahead than :attr:`horizon` (see each algorithm); may update in
        place.  For stores that judge states without deciding (reclamation)."""
        return state

    def params(self) -> dict[str, object]:
        """Configuration as plain data (for specs, logs and the Redis scripts)."""
        return {"limit": self.limit, "period": self.period}

    def spec(self) -> str:
        """A policy string that :func:`resilience.ratelimit.spec.parse_policy` reads back."""
        extra = ",".join(
            f"{k}={v}" for k, v in self.params().items() if k not in ("limit", "period")
        )
        rate = f"{self.limit} per {self.period:g} s"
        return f"{self.kind}:{rate}" + (f",{extra}" if extra else "")

    def reject_forever(self, remaining: int, reset_after: float) -> Decision:
        """The decision for a cost larger than the capacity: never admitted."""
        return _new(Decision, (False, self.limit, remaining, INF, reset_after))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Algorithm)
            and type(other) is type(self)
            and other.params() == self.params()
        )

    def __hash__(self) -> int:
        return hash((type(self), tuple(self.params().items())))
