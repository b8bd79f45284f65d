"""Parsing human rate strings such as ``"100/minute"`` or ``"5 per 2 seconds"``."""

from __future__ import annotations

import math
import re

__all__ = ["parse_rate"]

_UNITS: dict[str, float] = {}
for _names, _seconds in (
    (("ms", "msec", "millisecond", "milliseconds"), 0.001),
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("m", "min", "mins", "minute", "minutes"), 60.0),
    (("h", "hr", "hrs", "hour", "hours"), 3600.0),
    (("d", "day", "days"), 86400.0),
):
    for _name in _names:
        _UNITS[_name] = _seconds

_RATE = re.compile(
    r"^\s*(?P<limit>\d+)\s*(?:/|per\b)\s*(?P<count>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+)\s*$",
    re.IGNORECASE,
)


def parse_rate(text: str) -> tuple[int, float]:
    """Return ``(limit, period_seconds)`` for strings like ``"100/minute"``.

    Accepted forms: ``"10/s"``, ``"100/minute"``, ``"5 per 2 seconds"``,
    ``"1000/5m"``.  Raises ``ValueError`` naming the problem otherwise.
    """
    if not isinstance(text, str):
        raise ValueError(f"rate must be a string like '100/minute', got {text!r}")
    match = _RATE.match(text)
    if match is None:
        raise ValueError(
            f"rate {text!r} is not of the form '<limit>/<unit>' or '<n> per <m> <unit>'"
        )
    limit = int(match["limit"])
    if limit < 1:
        raise ValueError(f"rate {text!r}: limit must be at least 1")
    unit = match["unit"].lower()
    if unit not in _UNITS:
        raise ValueError(f"rate {text!r}: unknown time unit {unit!r}")
    count = float(match["count"]) if match["count"] else 1.0
    period = count * _UNITS[unit]
    if not (period > 0 and math.isfinite(period)):
        raise ValueError(f"rate {text!r}: period must be positive")
    return limit, period
