"""Rate-limit response headers: the IETF fields, the legacy ``X-RateLimit-*`` trio, ``Retry-After``.

IETF (draft-ietf-httpapi-ratelimit-headers-11, structured fields, RFC 9651):

    RateLimit-Policy: "api";q=100;w=60     the policy: quota q per window w seconds
    RateLimit: "api";r=42;t=17             now: r requests left; t seconds

``q`` and ``w`` are a promise: ``q`` requests sent at once, every ``w``
seconds, are always admitted (see :func:`policy_window`).  ``t`` is how long
the client should assume ``r`` is all it gets, never more than ``w``: when
the request was admitted, the time until the key is back to full capacity
(``Decision.reset_after``); when it was refused, the time until it would be
admitted (``Decision.retry_after``), which is also ``Retry-After`` unless the
wait is longer than ``w`` (then ``t = w``: the draft asks only that
Retry-After not end before ``t``, and clients put Retry-After first).
Policy names are sent as written or refused (:func:`check_policy_name`).
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
from typing import Any, Literal

from resilience.ratelimit.decision import Decision

__all__ = [
    "HeaderStyle",
    "RateLimitHeaders",
    "check_policy_name",
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


def check_policy_name(name: str) -> str:
    """A policy name a structured-field String can carry as is: printable ASCII.

    Names are sent one way everywhere (headers and problem bodies): a name
    the header cannot carry is refused rather than altered, since two altered
    names could collide (``näme`` and ``nüme`` would both become ``n?me``).
    """
    if not isinstance(name, str) or not name or not all(" " <= c <= "~" for c in name):
        raise ValueError(
            f"name {name!r} cannot be sent in RateLimit headers: a structured-field string "
            "carries printable ASCII only (rename the limiter, or pass headers=None)"
        )
    return name


def sf_string(text: str) -> str:
    """``text`` as a structured-field String: ``"`` and ``\\`` escaped (printable ASCII only)."""
    check_policy_name(text)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def policy_window(
    limit: int, period: float, capacity: float | None = None, horizon: float | None = None
) -> tuple[int, int]:
    """``(q, w)``: a quota a client can spend *at once* every ``w`` whole seconds, never refused.

    ``capacity``: the most the limiter admits at one instant (a bucket's
    burst; ``limit`` for window algorithms).  ``horizon``: how long a spent
    capacity takes to come back in full (a bucket's refill time; the period,
    or one sub-bucket more for the sliding counter).  ``w`` is the horizon
    rounded up to whole seconds (the draft has no sub-second windows) and
    ``q`` the capacity, scaled down so that ``q / w`` never exceeds the
    configured rate: a client that sends ``q`` requests at once and then
    waits ``w`` seconds, again and again, is admitted every time.
    """
    cap = limit if capacity is None else capacity
    window = max(1, delay_seconds(period if horizon is None else horizon))
    return max(0, math.floor(min(cap, limit * window / period) + 1e-9)), window


class RateLimitHeaders:
    """The headers of one policy in one style; ``asgi(d)`` / ``text(d)`` per response."""

    __slots__ = (
        "_ietf",
        "_legacy",
        "_limit_b",
        "_name",
        "_name_b",
        "_policy",
        "_policy_b",
        "name",
        "quota",
        "style",
        "window",
    )

    def __init__(
        self,
        name: str,
        limit: int,
        period: float,
        style: HeaderStyle,
        *,
        capacity: float | None = None,
        horizon: float | None = None,
    ) -> None:
        self.name = name
        self.style = check_style(style)
        self._ietf = style in ("ietf", "both")
        self._legacy = style in ("legacy", "both")
        quoted = sf_string(name)
        self.quota, self.window = policy_window(limit, period, capacity, horizon)
        self._name = quoted
        self._name_b = quoted.encode("ascii")
        self._policy = f"{quoted};q={self.quota};w={self.window}"
        self._policy_b = self._policy.encode("ascii")
        self._limit_b = str(self.quota).encode("ascii")

    @classmethod
    def for_algorithm(cls, name: str, algorithm: Any, style: HeaderStyle) -> RateLimitHeaders:
        """The headers of a limiter's algorithm (its limit, period, capacity and horizon)."""
        return cls(
            name,
            algorithm.limit,
            algorithm.period,
            style,
            capacity=getattr(algorithm, "capacity", None),
            horizon=getattr(algorithm, "horizon", None),
        )

    def _numbers(self, decision: Decision) -> tuple[int, int]:
        """``(r, t)``, with ``t`` never beyond the advertised window ``w``.

        ``t`` is the effective window: the client gets no more than ``r`` in
        it.  A refusal whose wait is longer (a sliding counter's estimate can
        carry over) says so in ``Retry-After``, which the draft puts first.
        The admitted case is inlined in :meth:`asgi` and :meth:`text` (the
        per-request path); this is the general one.
        """
        remaining = decision[2] if decision[2] > 0 else 0
        if decision[0]:
            seconds = delay_seconds(decision[4])
        else:
            wait = decision[3]
            if wait == math.inf:
                seconds = delay_seconds(decision[4])
            else:
                remaining = 0
                seconds = delay_seconds(wait) or 1
        window = self.window
        return remaining, seconds if seconds <= window else window

    def asgi(self, decision: Decision) -> list[tuple[bytes, bytes]]:
        """The headers for an ASGI ``http.response.start`` message."""
        if decision[0]:  # admitted: _numbers inlined (this runs on every request)
            remaining = decision[2]
            if remaining < 0:
                remaining = 0
            reset = decision[4]
            if reset >= self.window:
                seconds = self.window
            elif reset > 0.0:
                seconds = int(reset)
                if seconds < reset:
                    seconds += 1
            else:
                seconds = 0
        else:
            remaining, seconds = self._numbers(decision)
        if self._ietf:
            headers = [
                (b"ratelimit-policy", self._policy_b),
                (b"ratelimit", b"%s;r=%d;t=%d" % (self._name_b, remaining, seconds)),
            ]
            if not self._legacy:
                return headers
        else:
            headers = []
        if self._legacy:
            headers.append((b"x-ratelimit-limit", self._limit_b))
            headers.append((b"x-ratelimit-remaining", b"%d" % remaining))
            headers.append((b"x-ratelimit-reset", b"%d" % seconds))
        return headers

    def text(self, decision: Decision) -> list[tuple[str, str]]:
        """The same headers as text (aiohttp and other frameworks)."""
        if decision[0]:  # admitted: _numbers inlined, as in asgi()
            remaining = decision[2]
            if remaining < 0:
                remaining = 0
            reset = decision[4]
            if reset >= self.window:
                seconds = self.window
            elif reset > 0.0:
                seconds = int(reset)
                if seconds < reset:
                    seconds += 1
            else:
                seconds = 0
        else:
            remaining, seconds = self._numbers(decision)
        if self._ietf:
            headers = [
                ("RateLimit-Policy", self._policy),
                ("RateLimit", f"{self._name};r={remaining};t={seconds}"),
            ]
            if not self._legacy:
                return headers
        else:
            headers = []
        if self._legacy:
            headers.append(("X-RateLimit-Limit", str(self.quota)))
            headers.append(("X-RateLimit-Remaining", str(remaining)))
            headers.append(("X-RateLimit-Reset", str(seconds)))
        return headers

    def __repr__(self) -> str:
        return f"RateLimitHeaders({self.name!r}, style={self.style!r})"
