"""Reading how long a server (or a policy) asked us to wait.

A 429 or 503 often says ``Retry-After: 120`` or ``Retry-After: <HTTP-date>``
(RFC 9110, section 10.2.3); our own errors (``RateLimited``, ``CircuitOpen``,
``BulkheadFull``) carry a ``retry_after`` attribute.  Retrying sooner than
asked wastes an attempt and adds load to a service that already said it is
overloaded, so the retry policy waits at least this long.

HTTP dates are absolute wall-clock times: converting one to a delay is the one
place this library reads wall time (``time.time()``, or the clock's
``time()`` when it has one), because the timestamp came from outside the
process.  A malformed value is ignored (``None``), never an error: a bad
header must not turn a retryable failure into a crash.
"""

from __future__ import annotations

import datetime
import math
import re
import sys
from collections.abc import Callable

__all__ = ["parse_retry_after", "retry_after_of"]

_DELAY_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_HEADER = "Retry-After"


def parse_retry_after(value: object, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or ``None`` when it is not one.

    ``value`` is a number, ``"120"`` (delay-seconds), an HTTP-date string,
    bytes of either, a ``timedelta`` or an aware ``datetime``.  ``now`` is the
    wall-clock time (epoch seconds) that dates are measured from; it defaults
    to ``time.time()``.  A date in the past means 0.  An absurdly large number
    is clamped to the largest float, so callers cap it rather than crash.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _clean(float(value))
    if isinstance(value, datetime.timedelta):
        return _clean(value.total_seconds())
    if isinstance(value, datetime.datetime):
        return _until(value, now)
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) > 64:  # no legal value is this long; refuse to parse junk
        return None
    if _DELAY_SECONDS.fullmatch(text):
        return _clean(float(text))
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None
        return None
    return _until(when, now)


def _clean(seconds: float) -> float | None:
    if math.isnan(seconds):
        return None
    if seconds == math.inf:
        return sys.float_info.max
    return max(0.0, seconds)


def _until(when: datetime.datetime, now: float | None) -> float | None:
    if when.tzinfo is None:  # HTTP dates are GMT; a naive one is read as UTC
        when = when.replace(tzinfo=datetime.UTC)
    if now is None:
        import time

        now = time.time()
    try:
        return max(0.0, when.timestamp() - now)
    except (OverflowError, OSError, ValueError):
        return None


def retry_after_of(
    exc: BaseException, wall_time: Callable[[], float] | None = None
) -> float | None:
    """The wait ``exc`` asks for: its ``retry_after`` attribute, else a ``Retry-After`` header.

    Headers are looked up on ``exc.headers`` (aiohttp's ``ClientResponseError``)
    and on ``exc.response.headers`` (httpx's ``HTTPStatusError``, requests'
    ``HTTPError``).  A ``retry_after`` of ``math.inf`` is returned as is: it
    means "never" (a cost that can never fit), and the retry policy gives up.
    """
    attr = getattr(exc, "retry_after", None)
    if attr is not None:
        if isinstance(attr, float) and attr == math.inf:
            return math.inf
        return parse_retry_after(attr, _now(attr, wall_time))
    for holder in (exc, _safe_attr(exc, "response")):
        headers = _safe_attr(holder, "headers")
        if headers is None:
            continue
        raw = _header(headers)
        if raw is not None:
            return parse_retry_after(raw, _now(raw, wall_time))
    return None


def _now(value: object, wall_time: Callable[[], float] | None) -> float | None:
    """Wall time, read only when ``value`` could be a date (not for plain numbers)."""
    if wall_time is None or isinstance(value, int | float):
        return None
    return wall_time()


def _safe_attr(obj: object, name: str) -> object:
    if obj is None:
        return None
    try:
        return getattr(obj, name, None)
    except Exception:  # some clients raise from properties (httpx's .request when unset)
        return None


def _header(headers: object) -> object:
    get = getattr(headers, "get", None)
    if get is None:
        return None
    try:
        raw = get(_HEADER)
        if raw is None:
            raw = get(_HEADER.lower())
    except Exception:
        return None
    return raw
