"""Checking the failover client's options (``ValueError`` naming the field) and its defaults."""

from __future__ import annotations

from collections.abc import Iterable

from yarl import URL

import aiohttp
from resilience import _validate
from resilience.breaker import CircuitBreaker, CountWindow
from resilience.clock import Clock
from resilience.events import EventBus
from resilience.failover.credentials import carries_credentials

__all__ = [
    "default_breaker",
    "methods_option",
    "refuse_session_credentials",
    "seconds_option",
    "statuses_option",
]


def seconds_option(value: object, field: str, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    return _validate.positive_seconds(value, field)


def statuses_option(value: object) -> frozenset[int]:
    if not isinstance(value, Iterable) or isinstance(value, str | bytes):
        raise ValueError(f"failover_on must be a collection of HTTP statuses, got {value!r}")
    out = frozenset(value)
    if not all(isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in out):
        raise ValueError(f"failover_on must hold HTTP statuses (100-599), got {value!r}")
    return out


def methods_option(value: object) -> frozenset[str]:
    if not isinstance(value, Iterable) or isinstance(value, str | bytes):
        raise ValueError(f"methods must be a collection of HTTP method names, got {value!r}")
    items = list(value)
    if not all(isinstance(m, str) and m.isalpha() for m in items):
        raise ValueError(f"methods must be HTTP method names, got {value!r}")
    return frozenset(m.upper() for m in items)


def default_breaker(name: str, clock: Clock, events: EventBus) -> CircuitBreaker:
    return CircuitBreaker(
        name,
        failure_rate_threshold=0.5,
        minimum_calls=10,
        window=CountWindow(20),
        open_duration=10.0,
        clock=clock,
        events=events,
    )


def refuse_session_credentials(session: aiohttp.ClientSession, secondary: str) -> None:
    """A session's default credentials would reach the secondary on every failover.

    That covers its default headers and ``auth``, and the cookies its jar would
    send to the secondary (``ClientSession(cookies=...)`` makes cookies that go
    to every host).
    """
    defaults = getattr(session, "headers", None) or {}
    jar = session.cookie_jar.filter_cookies(URL(secondary))
    if carries_credentials(defaults, {"auth": getattr(session, "auth", None)}) or jar:
        raise ValueError(
            "session has default Authorization/Cookie/Proxy-Authorization headers, auth or "
            "cookies; they would reach the secondary (another host): pass them per request, "
            "or set forward_credentials=True"
        )
