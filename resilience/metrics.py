"""Per-policy decision tallies: the counts a metrics exporter reads at scrape time.

The allowed path of a policy emits no event (building one per admitted
request would cost more than the decision itself).  Instead each rate
limiter, circuit breaker and bulkhead keeps a :class:`Tally` of its
decisions: two integer attributes incremented where the decision is taken.
An exporter (``resilience.prometheus``, ``resilience.otel``) reads them when
it is scraped, so watching costs nothing per request beyond the increment,
and nobody pays for a sink that is not attached.  benchmarks/RESULTS.md
records the increment's cost on the allowed path.

Counts are exact for asyncio code and for the rate limiter (incremented
under its table lock); a breaker or bulkhead shared by many threads may, in
rare interleavings, lose an increment (``+=`` on an attribute is not atomic):
a counter for dashboards, not for billing.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

from resilience import _validate
from resilience.clock import Clock, now_function, resolve_clock
from resilience.errors import BulkheadFull, CircuitOpen, RateLimited
from resilience.policy import CALL, Policy, Steps, drive_async, drive_sync

__all__ = ["REJECTIONS", "Observer", "Tally", "Timed", "Tracked", "Tracker", "pattern_of"]

P = ParamSpec("P")
R = TypeVar("R")


class Tally:
    """How many calls a policy let through (``allowed``) and refused (``rejected``)."""

    __slots__ = ("allowed", "rejected")

    def __init__(self) -> None:
        self.allowed = 0
        self.rejected = 0

    def __repr__(self) -> str:
        return f"Tally(allowed={self.allowed}, rejected={self.rejected})"


# -- what exporters read at scrape time ---------------------------------------------

Observer = Callable[[str, str, float], None]
"""``observe(policy_name, outcome, seconds)``: where :class:`Timed` reports a call."""

REJECTIONS: tuple[type[BaseException], ...] = (RateLimited, CircuitOpen, BulkheadFull)
"""Errors that mean "a policy refused the call", reported as outcome ``rejected``."""


@dataclass(frozen=True, slots=True)
class Tracked:
    """One tracked policy: its tally (kept strongly, so counters never go back) and itself."""

    pattern: str
    name: str
    tally: Tally
    ref: weakref.ref[Any]


def pattern_of(policy: object) -> str:
    """The ``pattern`` label of a policy: what kind of protection it is."""
    for cls in type(policy).__mro__:
        found = _PATTERNS.get(cls.__name__)
        if found is not None:
            return found
    raise ValueError(
        "track() takes RateLimiter, CircuitBreaker and Bulkhead objects "
        f"(anything with a .tally), got {policy!r}"
    )


_PATTERNS = {
    "RateLimiter": "rate_limiter",
    "CircuitBreaker": "circuit_breaker",
    "Bulkhead": "bulkhead",
}


class Tracker:
    """The policies an exporter reports on, plus decision counts fed by events.

    ``track(policy)`` keeps the policy weakly (tracking never keeps a policy
    alive) and its :class:`Tally` strongly: a policy that goes away keeps its
    counts, so exported counters never decrease.  ``count()`` adds decisions
    that arrive as events (idempotent replays, failovers) to the same table.
    Thread-safe: tracking and counting take a lock; reading copies.
    """

    __slots__ = ("_counted", "_lock", "_tracked")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tracked: list[Tracked] = []
        self._counted: dict[tuple[str, str, str], int] = {}

    def track(self, *policies: Any) -> None:
        entries = []
        for policy in policies:
            pattern = pattern_of(policy)
            tally = getattr(policy, "tally", None)
            if not isinstance(tally, Tally):
                raise ValueError(f"{policy!r} keeps no Tally to export")
            entries.append(Tracked(pattern, policy.name, tally, weakref.ref(policy)))
        with self._lock:
            known = {id(t.tally) for t in self._tracked}
            for entry in entries:
                if id(entry.tally) not in known:
                    known.add(id(entry.tally))
                    self._tracked.append(entry)

    def count(self, pattern: str, name: str, outcome: str, amount: int = 1) -> None:
        """Add ``amount`` decisions with ``outcome`` (for decisions reported as events)."""
        key = (pattern, name, outcome)
        with self._lock:
            self._counted[key] = self._counted.get(key, 0) + amount

    def decisions(self) -> dict[tuple[str, str, str], int]:
        """``(pattern, policy, outcome) -> count``; policies sharing a name are summed."""
        with self._lock:
            tracked = list(self._tracked)
            totals = dict(self._counted)
        for entry in tracked:
            for outcome, value in (
                ("allowed", entry.tally.allowed),
                ("rejected", entry.tally.rejected),
            ):
                key = (entry.pattern, entry.name, outcome)
                totals[key] = totals.get(key, 0) + value
        return totals

    def live(self, pattern: str) -> list[Any]:
        """The tracked policies of one pattern that still exist."""
        with self._lock:
            tracked = list(self._tracked)
        found = []
        for entry in tracked:
            if entry.pattern == pattern:
                policy = entry.ref()
                if policy is not None:
                    found.append(policy)
        return found

    def breaker_states(self) -> dict[str, str]:
        """Each tracked breaker's state now (a breaker whose store cannot answer is left out)."""
        states = {}
        for breaker in self.live("circuit_breaker"):
            try:
                states[breaker.name] = str(breaker.state.value)
            except Exception:  # a remote store that is down, or async-only: no sample
                continue
        return states

    def bulkheads(self) -> dict[str, tuple[int, int, int]]:
        """Each tracked bulkhead's ``(active, queued, max_concurrent)`` now (same names summed)."""
        found: dict[str, tuple[int, int, int]] = {}
        for bulkhead in self.live("bulkhead"):
            a, q, m = found.get(bulkhead.name, (0, 0, 0))
            found[bulkhead.name] = (
                a + bulkhead.active,
                q + bulkhead.queued,
                m + bulkhead.max_concurrent,
            )
        return found


class Timed(Policy):
    """A policy that times each call and reports ``(name, outcome, seconds)`` to ``observe``.

    Outcomes: ``ok``, ``error``, or ``rejected`` (a policy inside refused the
    call: :class:`RateLimited`, :class:`CircuitOpen`, :class:`BulkheadFull`).
    Put it first in :func:`~resilience.compose` to time the whole guarded call;
    exporters hand one out (``PrometheusSink.timed``), so the cost (two clock
    reads and an observation) is paid only where asked for.
    """

    __slots__ = ("_clock", "_now", "_observe", "name")

    def __init__(self, name: str, observe: Observer, clock: Clock | None = None) -> None:
        _validate.non_empty_str(name, "name")
        if not callable(observe):
            raise ValueError(f"observe must be callable, got {observe!r}")
        self.name = name
        self._observe = observe
        self._clock = resolve_clock(clock)
        self._now = now_function(self._clock)

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        return cast(R, drive_sync(self._timed(), self._clock, fn, args, kwargs))

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        return cast(R, await drive_async(self._timed(), self._clock, fn, args, kwargs))

    def _timed(self) -> Steps[Any]:
        """Run the call once (both drivers) and report its outcome and duration."""
        start = self._now()
        outcome = "error"
        try:
            result = yield CALL
            outcome = "ok"
            return result
        except REJECTIONS:
            outcome = "rejected"
            raise
        finally:
            self._observe(self.name, outcome, self._now() - start)

    def __repr__(self) -> str:
        return f"Timed({self.name!r})"
