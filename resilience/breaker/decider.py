"""When to open: the pure verdicts, kept apart from the state machine.

The state machine asks two questions and this module answers them from
numbers alone (no clock, no lock, no state): "given the closed window's
totals, should the circuit open?" and "given the half-open probes' results,
should it reopen?".  A remote store's script implements the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CONSECUTIVE_FAILURES",
    "FAILURE_RATE",
    "PROBE_FAILED",
    "SLOW_CALL_RATE",
    "TripDecider",
]

CONSECUTIVE_FAILURES = "consecutive_failures"
FAILURE_RATE = "failure_rate"
SLOW_CALL_RATE = "slow_call_rate"
PROBE_FAILED = "probe_failed"


@dataclass(frozen=True, slots=True)
class TripDecider:
    """The thresholds.  ``None`` disables a trigger.

    Rates are compared as ``count / calls >= threshold`` (the division is
    exactly rounded, so 3 failures in 30 calls meets a 0.1 threshold).
    """

    failure_rate_threshold: float | None
    minimum_calls: int
    consecutive_failures: int | None
    slow_call_rate_threshold: float | None

    @property
    def uses_minimum_calls(self) -> bool:
        """Whether reaching ``minimum_calls`` can by itself open the circuit."""
        return self.failure_rate_threshold is not None or self.slow_call_rate_threshold is not None

    def should_open(self, calls: int, failures: int, slow: int, consecutive: int) -> str | None:
        """The reason to open, or ``None`` to stay closed."""
        limit = self.consecutive_failures
        if limit is not None and consecutive >= limit:
            return CONSECUTIVE_FAILURES
        if calls < self.minimum_calls:
            return None
        rate = self.failure_rate_threshold
        if rate is not None and failures / calls >= rate:
            return FAILURE_RATE
        slow_rate = self.slow_call_rate_threshold
        if slow_rate is not None and slow / calls >= slow_rate:
            return SLOW_CALL_RATE
        return None

    def should_reopen(self, probes: int, slow: int) -> str | None:
        """After ``probes`` successful probes, ``slow`` of them slow: reopen, or close (None)."""
        slow_rate = self.slow_call_rate_threshold
        if slow_rate is not None and probes and slow / probes >= slow_rate:
            return SLOW_CALL_RATE
        return None
