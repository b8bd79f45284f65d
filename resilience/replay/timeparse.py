"""Log timestamps to epoch seconds.

Access logs repeat the same timestamp string for every request in a second,
so conversions go through a small cache: a 1M-line log does a few thousand
real parses, not a million.  Naive times (no UTC offset) are taken as UTC.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["TimeCache", "clf_time", "epoch_seconds", "text_time"]

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_CACHE_SIZE = 65_536
_ZONES: dict[str, timezone] = {}


def _zone(text: str) -> timezone:
    """``"-0700"`` to a fixed-offset zone (few distinct values, so cached)."""
    zone = _ZONES.get(text)
    if zone is None:
        if len(text) != 5 or text[0] not in "+-" or not text[1:].isdigit():
            raise ValueError(f"UTC offset {text!r} is not like +0200")
        minutes = int(text[1:3]) * 60 + int(text[3:5])
        zone = timezone(timedelta(minutes=-minutes if text[0] == "-" else minutes))
        _ZONES[text] = zone
    return zone


def clf_time(text: str) -> float:
    """``"10/Oct/2000:13:55:36 -0700"`` (Apache ``%t``, nginx ``$time_local``) to epoch seconds.

    Parsed by position, not ``strptime``: faster, and month names do not
    depend on the locale.  Fractional seconds (``...:36.250 -0700``) are kept.
    """
    date, _, zone = text.partition(" ")
    parts = date.split(":")
    if len(parts) != 4 or not zone:
        raise ValueError(f"timestamp {text!r} is not like 10/Oct/2000:13:55:36 -0700")
    day_month_year = parts[0].split("/")
    if len(day_month_year) != 3 or day_month_year[1] not in _MONTHS:
        raise ValueError(f"timestamp {text!r} is not like 10/Oct/2000:13:55:36 -0700")
    day, month, year = day_month_year
    seconds = parts[3]
    whole, _, fraction = seconds.partition(".")
    if not (day.isdigit() and year.isdigit() and parts[1].isdigit() and parts[2].isdigit()):
        raise ValueError(f"timestamp {text!r} is not like 10/Oct/2000:13:55:36 -0700")
    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        raise ValueError(f"timestamp {text!r} has malformed seconds")
    try:
        moment = datetime(
            int(year), _MONTHS[month], int(day), int(parts[1]), int(parts[2]), int(whole),
            tzinfo=_zone(zone),
        )  # fmt: skip
    except ValueError as exc:
        raise ValueError(f"timestamp {text!r}: {exc}") from None
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


def epoch_seconds(value: float) -> float:
    """A number from a log: epoch seconds, or milli/micro/nanoseconds by magnitude.

    A value above 1e11 is not a plausible count of seconds (year 5138), so it
    is read as milliseconds; above 1e14 as microseconds, above 1e17 as
    nanoseconds.
    """
    seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"timestamp {value!r} is not a finite number")
    magnitude = abs(seconds)
    if magnitude > 1e17:
        return seconds / 1e9
    if magnitude > 1e14:
        return seconds / 1e6
    if magnitude > 1e11:
        return seconds / 1e3
    return seconds


def text_time(text: str) -> float:
    """A timestamp string: epoch number, ISO 8601, or the access-log layout."""
    text = text.strip()
    if not text:
        raise ValueError("timestamp is empty")
    try:
        return epoch_seconds(float(text))
    except ValueError:
        pass
    if text[0] == "[" and text[-1] == "]":
        text = text[1:-1]
    if len(text) > 2 and text[2] == "/":
        return clf_time(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"timestamp {text!r} is neither epoch seconds, ISO 8601 nor 10/Oct/2000:13:55:36 -0700"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class TimeCache:
    """Memoise a string-to-epoch parser; errors are raised, never cached.

    The bound is a full clear when reached: logs are nearly sorted, so the
    strings that matter next are the ones seen after the clear.
    """

    __slots__ = ("_cache", "_parse")

    def __init__(self, parse: Callable[[str], float]) -> None:
        self._parse = parse
        self._cache: dict[str, float] = {}

    def __call__(self, text: str) -> float:
        value = self._cache.get(text)
        if value is None:
            value = self._parse(text)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[text] = value
        return value
