"""Exponential backoff with jitter and a cap, as a tenacity wait strategy.

Jitter spreads the retries of many clients that failed at the same moment so
they do not return as one synchronized wave.  ``Backoff`` is a tenacity
``wait_base``: tenacity's engine asks it for each sleep, and it can be handed
to ``tenacity.Retrying(wait=...)`` directly.

The delay never overflows: once ``initial * multiplier ** n`` would pass
``maximum`` the result is ``maximum`` without computing the power, so attempt
10,000 (or 10**9) costs the same as attempt 2.
"""

from __future__ import annotations

import math
import random
import sys
from typing import TYPE_CHECKING, Literal

from tenacity.wait import wait_base

from resilience import _validate

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["Backoff", "Jitter"]

Jitter = Literal["full", "equal", "decorrelated"] | None
_JITTERS = ("full", "equal", "decorrelated", None)


def _seconds(value: object, field: str) -> float:
    return _validate.non_negative_number(value, field, unit="number of seconds")


class Backoff(wait_base):
    """Delay before retry ``n`` (1-based): ``initial * multiplier ** (n - 1)``, capped.

    Jitter (the AWS Architecture Blog's names):

    * ``"full"``: uniform in ``[0, d]``; spreads load best, the default.
    * ``"equal"``: ``d / 2`` plus uniform in ``[0, d / 2]``; never retries at once.
    * ``"decorrelated"``: uniform in ``[initial, 3 * previous]``, capped; each
      delay depends on the last one rather than on the attempt number.
    * ``None``: exactly ``d``.

    Every result lies in ``[0, maximum]``.  ``rng`` (a ``random.Random``)
    makes the jitter reproducible.
    """

    __slots__ = ("_grow_until", "_random", "initial", "jitter", "maximum", "multiplier")

    def __init__(
        self,
        initial: float = 0.1,
        maximum: float = 10.0,
        multiplier: float = 2.0,
        jitter: Jitter = "full",
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = _seconds(initial, "initial")
        self.maximum = _seconds(maximum, "maximum")
        if self.maximum < self.initial:
            raise ValueError(f"maximum ({maximum!r}) must be >= initial ({initial!r})")
        if jitter == "decorrelated" and self.initial == 0.0:
            raise ValueError("initial must be > 0 with jitter='decorrelated' (it grows from it)")
        if (
            isinstance(multiplier, bool)
            or not isinstance(multiplier, int | float)
            or not math.isfinite(multiplier)
            or multiplier < 1
        ):
            raise ValueError(f"multiplier must be a finite number >= 1, got {multiplier!r}")
        self.multiplier = float(multiplier)
        if jitter not in _JITTERS:
            raise ValueError(f"jitter must be one of {list(_JITTERS)}, got {jitter!r}")
        self.jitter: Jitter = jitter
        self._random = rng.random if rng is not None else random.random
        # The first exponent at which the curve reaches the cap; from there on
        # the answer is `maximum` and the power is never computed.  0 means the
        # curve is flat (no growth): every delay is `initial`.
        if self.initial == 0.0 or self.multiplier == 1.0 or self.maximum == self.initial:
            self._grow_until = 0
        else:  # in logs, so a tiny `initial` or a multiplier near 1 cannot overflow
            steps = (math.log(self.maximum) - math.log(self.initial)) / math.log(self.multiplier)
            self._grow_until = math.ceil(steps) if steps < sys.maxsize else sys.maxsize

    def base(self, retry: int) -> float:
        """The un-jittered, capped delay before retry number ``retry`` (>= 1)."""
        exponent = retry - 1
        if exponent <= 0:
            return self.initial
        if exponent >= self._grow_until:
            return self.maximum if self._grow_until else self.initial
        try:
            return min(self.maximum, self.initial * self.multiplier**exponent)
        except OverflowError:  # only reachable when `initial` is tiny: the cap applies
            return self.maximum

    def delay(self, retry: int, previous: float = 0.0) -> float:
        """The jittered delay before retry ``retry``; ``previous`` is the last delay slept."""
        jitter = self.jitter
        if jitter == "decorrelated":
            low = self.initial
            high = min(self.maximum, max(previous, low) * 3.0)
            return min(self.maximum, low + (high - low) * self._random())
        d = self.base(retry)
        if jitter == "full":
            return d * self._random()
        if jitter == "equal":
            half = d / 2.0
            return half + half * self._random()
        return d

    def __call__(self, retry_state: RetryCallState) -> float:
        # tenacity calls the wait strategy after attempt `attempt_number` failed;
        # `upcoming_sleep` still holds the previous sleep at that point.
        return self.delay(retry_state.attempt_number, retry_state.upcoming_sleep)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Backoff):
            return NotImplemented
        return (self.initial, self.maximum, self.multiplier, self.jitter) == (
            other.initial,
            other.maximum,
            other.multiplier,
            other.jitter,
        )

    def __hash__(self) -> int:
        return hash((self.initial, self.maximum, self.multiplier, self.jitter))

    def __repr__(self) -> str:
        return (
            f"Backoff(initial={self.initial!r}, maximum={self.maximum!r}, "
            f"multiplier={self.multiplier!r}, jitter={self.jitter!r})"
        )
