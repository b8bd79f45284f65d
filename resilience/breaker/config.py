"""Validated breaker options, and the part of them a state store needs.

Every option is checked once, at construction, and a bad one raises
``ValueError`` naming it.  :class:`BreakerConfig` is what the state store sees
(window, thresholds, timers); how exceptions and results are classified stays
with the breaker, because it never crosses a process boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

from resilience._validate import fraction, positive_seconds, whole_number
from resilience.breaker.decider import TripDecider
from resilience.breaker.windows import CountWindow, TimeWindow, Window

__all__ = ["BreakerConfig"]


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """What a breaker's state store must know to make transitions."""

    window: Window
    decider: TripDecider
    slow_call_duration: float | None
    open_duration: float
    half_open_max_calls: int

    @classmethod
    def build(
        cls,
        *,
        failure_rate_threshold: float | None = 0.5,
        minimum_calls: int = 10,
        window: Window | None = None,
        consecutive_failures: int | None = None,
        slow_call_duration: float | None = None,
        slow_call_rate_threshold: float = 1.0,
        open_duration: float = 30.0,
        half_open_max_calls: int = 1,
    ) -> BreakerConfig:
        """Validate the options (``ValueError`` naming the field) and bundle them."""
        window = CountWindow() if window is None else window
        if not isinstance(window, CountWindow | TimeWindow):
            raise ValueError(f"window must be a CountWindow or a TimeWindow, got {window!r}")
        if failure_rate_threshold is not None:
            failure_rate_threshold = fraction(failure_rate_threshold, "failure_rate_threshold")
        minimum_calls = whole_number(minimum_calls, "minimum_calls")
        if isinstance(window, CountWindow) and minimum_calls > window.size:
            raise ValueError(
                f"minimum_calls ({minimum_calls}) must not exceed the window size ({window.size}):"
                " the window could never hold that many calls"
            )
        if consecutive_failures is not None:
            consecutive_failures = whole_number(consecutive_failures, "consecutive_failures")
        if slow_call_duration is not None:
            slow_call_duration = positive_seconds(slow_call_duration, "slow_call_duration")
        slow_rate = fraction(slow_call_rate_threshold, "slow_call_rate_threshold")
        open_duration = positive_seconds(open_duration, "open_duration")
        half_open_max_calls = whole_number(half_open_max_calls, "half_open_max_calls")
        if (
            failure_rate_threshold is None
            and consecutive_failures is None
            and (slow_call_duration is None)
        ):
            raise ValueError(
                "failure_rate_threshold is None and neither consecutive_failures nor"
                " slow_call_duration is set: nothing could ever open the circuit"
            )
        decider = TripDecider(
            failure_rate_threshold=failure_rate_threshold,
            minimum_calls=minimum_calls,
            consecutive_failures=consecutive_failures,
            slow_call_rate_threshold=None if slow_call_duration is None else slow_rate,
        )
        return cls(window, decider, slow_call_duration, open_duration, half_open_max_calls)
