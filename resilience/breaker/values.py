"""The values a breaker's state store hands back: state, permits, transitions, snapshots.

They are plain tuples so that a remote store (Redis) can build them from a
script's reply, and so that the in-process store can preallocate the permits
it hands out on the hot path.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

__all__ = ["BreakerSnapshot", "CircuitState", "Permit", "Transition"]


class CircuitState(StrEnum):
    """Where a circuit breaker is.  A ``str`` so it logs and compares as ``"closed"``."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Transition(NamedTuple):
    """One state change, returned by the store so the breaker can emit an event."""

    old: CircuitState
    new: CircuitState
    reason: str


class Permit(NamedTuple):
    """The answer to "may this call run?", given before the call and handed back after it.

    ``token`` identifies the state instance (epoch) that issued the permit; an
    outcome recorded with a token that is no longer current is ignored, which
    is why a failure finishing after the circuit opened cannot extend the open
    timer.  ``transition`` is set when asking for the permit moved the circuit
    (open -> half-open).  Truth-tests as ``allowed``.
    """

    allowed: bool
    state: CircuitState
    retry_after: float
    token: object
    transition: Transition | None = None

    def __bool__(self) -> bool:
        return self.allowed


class BreakerSnapshot(NamedTuple):
    """What the breaker looks like at one instant (for metrics, health pages and tests).

    ``calls``, ``failures`` and ``slow_calls`` are the closed-state window's
    totals (zero in the other states); ``probes_in_flight`` and
    ``probes_succeeded`` describe half-open.  ``held`` is True after
    ``force_open()`` / ``force_closed()`` until ``reset()``.
    """

    state: CircuitState
    held: bool
    calls: int
    failures: int
    slow_calls: int
    consecutive_failures: int
    probes_in_flight: int
    probes_succeeded: int
    retry_after: float

    @property
    def failure_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0

    @property
    def slow_call_rate(self) -> float:
        return self.slow_calls / self.calls if self.calls else 0.0
