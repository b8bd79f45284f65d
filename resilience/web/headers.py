"""Rate-limit response headers: the IETF fields, the legacy ``X-RateLimit-*`` trio, ``Retry-After``.

IETF (draft-ietf-httpapi-ratelimit-headers-11, structured fields, RFC 9651):

    RateLimit-Policy: "api";q=100;w=60     the policy: quota q per window w seconds
    RateLimit: "api";r=42;t=17             now: r requests left; t seconds

``t`` is how long the client should assume ``r`` is all it gets: when the
request was admitted, the time until the key is back to full capacity
(``Decision.reset_after``); when it was refused, the time until it would be
admitted (``Decision.retry_after``), which is also ``Retry-After``, so the two
never disagree (the draft asks that Retry-After not end before ``t``).
All durations are whole seconds rounded *up*: a client that waits what we
said is never refused for having come back a fraction too early.

Legacy: ``X-RateLimit-Limit`` (q), ``X-RateLimit-Remaining`` (r) and
``X-RateLimit-Reset`` (t, in seconds from now, not an epoch timestamp: it
needs no synchronised clocks and matches the IETF ``t``).

Values are built as bytes for ASGI (the hot path) and as text for other
frameworks; everything constant per policy is computed once.
"""

from __future__ import annotations

import math
from typing import Literal

from resilience.ratelimit.decision import Decision

__all__ = [
    "HeaderStyle",
    "RateLimitHeaders",
    "check_style",
    "delay_seconds",
    "retry_after_seconds",
    "sf_string",
]

HeaderStyle = Literal["ietf", "legacy", "both"] | None
STYLES = ("ietf", "legacy", "both", None)


def check_style(value: object, field: str = "headers") -> HeaderStyle:
    if value not in STYLES:
        raise ValueError(f"{field} must be 'ietf', 'legacy', 'both' or None, got {value!r}")
    return value  # type: ignore[return-value]


def delay_seconds(seconds: float) -> int:
    """Whole seconds, rounded up, never negative (the ``delay-seconds`` of RFC 9110)."""
    if not seconds > 0.0:
        return 0
    whole = int(seconds)
    return whole if whole >= seconds else whole + 1


def retry_after_seconds(seconds: float) -> int | None:
    """``Retry-After`` for a refusal: at least 1, rounded up; ``None`` when never (inf)."""
    if math.isinf(seconds) or math.isnan(seconds):
        return None
    return max(1, delay_seconds(seconds))


def sf_string(text: str) -> str:
    """``text`` as a structured-field String: printable ASCII, ``"`` and ``\\`` escaped."""
    safe = "".join(c if " " <= c <= "~" else "?" for c in text)
    return '"' + safe.replace("\\", "\\\\").replace('"', '\\"') + '"'


def policy_window(limit: int, period: float) -> tuple[int, int]:
    """``(q, w)`` with ``w`` a whole number of seconds (the draft has no sub-second windows).

    A period that is not a whole number of seconds is rounded up and the
    quota scaled down to match, so the advertised rate never exceeds the real one.
    """
    window = max(1, delay_seconds(period))
    if window == period:
        return limit, window
    return max(0, math.floor(limit * window / period)), window


_DISPLAY = {
    b"ratelimit-policy": "RateLimit-Policy",
    b"ratelimit": "RateLimit",
    b"x-ratelimit-limit": "X-RateLimit-Limit",
    b"x-ratelimit-remaining": "X-RateLimit-Remaining",
    b"x-ratelimit-reset": "X-RateLimit-Reset",
}


class RateLimitHeaders:
    """The headers of one policy in one style; ``asgi(d)`` / ``text(d)`` per response."""

    __slots__ = ("_ietf", "_legacy", "_limit_b", "_name_b", "_policy_b", "name", "style")

    def __init__(self, name: str, limit: int, period: float, style: HeaderStyle) -> None:
        self.name = name
        self.style = check_style(style)
        self._ietf = style in ("ietf", "both")
        self._legacy = style in ("legacy", "both")
        quoted = sf_string(name)
        quota, window = policy_window(limit, period)
        self._name_b = quoted.encode("ascii")
        self._policy_b = f"{quoted};q={quota};w={window}".encode("ascii")
        self._limit_b = str(quota).encode("ascii")

    @staticmethod
    def _numbers(decision: Decision) -> tuple[int, int]:
        remaining = decision[2] if decision[2] > 0 else 0
        if decision[0]:
            return remaining, delay_seconds(decision[4])
        wait = decision[3]
        if math.isinf(wait):
            return remaining, delay_seconds(decision[4])
        return 0, max(1, delay_seconds(wait))

    def asgi(self, decision: Decision) -> list[tuple[bytes, bytes]]:
        """The headers for an ASGI ``http.response.start`` message."""
        remaining, reset = self._numbers(decision)
        headers: list[tuple[bytes, bytes]] = []
        if self._ietf:
            headers.append((b"ratelimit-policy", self._policy_b))
            headers.append((b"ratelimit", b"%s;r=%d;t=%d" % (self._name_b, remaining, reset)))
        if self._legacy:
            headers.append((b"x-ratelimit-limit", self._limit_b))
            headers.append((b"x-ratelimit-remaining", b"%d" % remaining))
            headers.append((b"x-ratelimit-reset", b"%d" % reset))
        return headers

    def text(self, decision: Decision) -> list[tuple[str, str]]:
        """The same headers as text (aiohttp and other frameworks)."""
        return [(_DISPLAY[k], v.decode("latin-1")) for k, v in self.asgi(decision)]

    def __repr__(self) -> str:
        return f"RateLimitHeaders({self.name!r}, style={self.style!r})"
