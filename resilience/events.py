"""Typed events and the sinks that receive them.

Policies emit frozen dataclasses.  Emission goes through an :class:`EventBus`;
every emitting site asks ``bus.wants(EventType)`` first and builds the event
only when some sink would receive it (a debug-level rejection under the
default info-level log sink is never built), so silence costs one dict
lookup.  A sink that raises is counted in ``bus.sink_errors`` and otherwise
ignored: observability never breaks the protected call.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog

from resilience import _validate
from resilience.clock import Clock, now_function, resolve_clock

__all__ = [
    "BulkheadRejected",
    "CircuitStateChanged",
    "Event",
    "EventBus",
    "FailoverAttempt",
    "FailoverSwitched",
    "IdempotencyConflict",
    "IdempotentReplay",
    "RateLimitExceeded",
    "RetryScheduled",
    "Sink",
    "StoreFailed",
    "StructlogSink",
    "default_bus",
    "resolve_bus",
    "LEVELS",
]

Sink = Callable[["Event"], None]


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event: which policy emitted it."""

    policy: str
    level: ClassVar[str] = "info"
    kind: ClassVar[str] = "event"

    def fields(self) -> dict[str, Any]:
        """The event's fields as a plain dict (for logging and export)."""
        return {f.name: getattr(self, f.name) for f in _fields_of(type(self))}


_FIELDS: dict[type[Any], tuple[dataclasses.Field[Any], ...]] = {}


def _fields_of(cls: type[Any]) -> tuple[dataclasses.Field[Any], ...]:
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = dataclasses.fields(cls)
    return found


@dataclass(frozen=True, slots=True)
class RateLimitExceeded(Event):
    """A rate limiter rejected a request.  ``key`` is for logs, never for metric labels."""

    key: str
    cost: float
    retry_after: float
    level: ClassVar[str] = "debug"
    kind: ClassVar[str] = "rate_limited"


@dataclass(frozen=True, slots=True)
class StoreFailed(Event):
    """A store call failed and ``on_store_error`` decided the outcome."""

    operation: str
    error: str
    action: str
    level: ClassVar[str] = "warning"
    kind: ClassVar[str] = "store_failed"


@dataclass(frozen=True, slots=True)
class CircuitStateChanged(Event):
    """A circuit breaker moved from one state to another."""

    old: str
    new: str
    reason: str = ""
    level: ClassVar[str] = "warning"
    kind: ClassVar[str] = "circuit_state_changed"


@dataclass(frozen=True, slots=True)
class RetryScheduled(Event):
    """A retry will run after ``delay`` seconds."""

    attempt: int
    delay: float
    error: str
    level: ClassVar[str] = "info"
    kind: ClassVar[str] = "retry_scheduled"


@dataclass(frozen=True, slots=True)
class BulkheadRejected(Event):
    """A bulkhead refused a call (queue full or queue timeout)."""

    reason: str
    level: ClassVar[str] = "debug"  # per request: an overload must not become a log flood
    kind: ClassVar[str] = "bulkhead_rejected"


@dataclass(frozen=True, slots=True)
class FailoverAttempt(Event):
    """A request is sent to ``to`` after ``reason`` on ``origin`` (names, never URLs)."""

    origin: str
    to: str
    method: str
    reason: str
    level: ClassVar[str] = "debug"  # per request
    kind: ClassVar[str] = "failover_attempt"


@dataclass(frozen=True, slots=True)
class FailoverSwitched(Event):
    """The failover client moved traffic from ``old`` to ``new`` (origin names)."""

    old: str
    new: str
    reason: str
    level: ClassVar[str] = "warning"
    kind: ClassVar[str] = "failover_switched"


@dataclass(frozen=True, slots=True)
class IdempotentReplay(Event):
    """A call or request with a known idempotency key got the stored result without running."""

    key: str
    level: ClassVar[str] = "debug"  # per request
    kind: ClassVar[str] = "idempotent_replay"


@dataclass(frozen=True, slots=True)
class IdempotencyConflict(Event):
    """An idempotency key was refused: ``reason`` is ``"in_progress"`` or ``"reused"``."""

    key: str
    reason: str
    level: ClassVar[str] = "debug"  # per request: a client retrying in a loop must not flood logs
    kind: ClassVar[str] = "idempotency_conflict"


LEVELS: dict[str, int] = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_NOBODY = 1 << 30  # the floor of a bus without sinks: above every level


class _Wanted(dict[type[Event], bool]):
    """Event type -> whether a sink receives it: level ``floor`` or above, or named in ``extra``."""

    __slots__ = ("extra", "floor")

    def __init__(self, floor: int, extra: frozenset[type[Event]] = frozenset()) -> None:
        super().__init__()
        self.floor = floor
        self.extra = extra

    def __missing__(self, event_type: type[Event]) -> bool:
        wanted = self[event_type] = (
            LEVELS.get(event_type.level, 20) >= self.floor or event_type in self.extra
        )
        return wanted


def _types_of(sink: Sink) -> frozenset[type[Event]]:
    """Event types a sink receives whatever their level: its ``wanted_types`` attribute.

    A metrics sink names the per-request (debug) events it counts, such as an
    idempotent replay, without receiving every other debug event: the bus
    then builds only those.
    """
    types = frozenset(getattr(sink, "wanted_types", ()))
    for event_type in types:
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise ValueError(f"sink wanted_types must be Event subclasses, got {event_type!r}")
    return types


def _level_of(sink: Sink) -> int:
    """A sink's threshold: its ``min_level`` attribute, or debug (everything)."""
    level = getattr(sink, "min_level", "debug")
    if level not in LEVELS:
        raise ValueError(f"sink min_level must be one of {list(LEVELS)}, got {level!r}")
    return LEVELS[level]


class StructlogSink:
    """Log events through structlog at each event's level.

    ``min_level="info"`` (the default) leaves out per-request events such as
    rate-limit rejections (debug), so a flood of 429s does not become a flood
    of log lines; state changes and store failures (warning) are logged.

    A store that is down fails every request, so ``StoreFailed`` would be a
    warning per request: a log flood on top of the outage.  The sink logs the
    same failure (policy, operation, action) at most once per
    ``repeat_every`` seconds and says on the next line how many it left out
    (``suppressed=N``); ``repeat_every=0`` logs every one.  Only the log is
    thinned: counters (``store_errors``) and other sinks (Prometheus, OTel)
    still see every event.
    """

    __slots__ = ("_clock", "_lock", "_logger", "_seen", "min_level", "repeat_every")

    def __init__(
        self,
        logger: Any = None,
        min_level: str = "info",
        *,
        repeat_every: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        if min_level not in LEVELS:
            raise ValueError(f"min_level must be one of {list(LEVELS)}, got {min_level!r}")
        self._logger = logger if logger is not None else structlog.get_logger("resilience")
        self.min_level = min_level
        self.repeat_every = _validate.non_negative_number(
            repeat_every, "repeat_every", unit="seconds"
        )
        self._clock = now_function(resolve_clock(clock))
        self._lock = threading.Lock()
        # (policy, operation, action) -> (when last logged, left out since)
        self._seen: dict[tuple[str, str, str], tuple[float, int]] = {}

    def __call__(self, event: Event) -> None:
        fields = event.fields()
        if isinstance(event, StoreFailed) and self.repeat_every > 0:
            suppressed = self._thin(event)
            if suppressed < 0:
                return
            if suppressed:
                fields["suppressed"] = suppressed
        log = getattr(self._logger, event.level)
        log(event.kind, **fields)

    def _thin(self, event: StoreFailed) -> int:
        """-1 to leave this one out; else how many were left out before it."""
        key = (event.policy, event.operation, event.action)
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and 0 <= now - seen[0] < self.repeat_every:
                self._seen[key] = (seen[0], seen[1] + 1)
                return -1
            if seen is None and len(self._seen) >= _MAX_THINNED:
                self._seen.clear()  # bounded: policies are few, this is a safety net
            self._seen[key] = (now, 0)
            return 0 if seen is None else seen[1]

    def __repr__(self) -> str:
        return f"StructlogSink(min_level={self.min_level!r}, repeat_every={self.repeat_every!r})"


_MAX_THINNED = 1024


class EventBus:
    """Sinks, each with a minimum level (and optionally ``wanted_types`` below it).

    ``sinks`` is a tuple (readers need no lock).  Policies call
    ``bus.wants(EventType)`` before building an event, so an event nobody
    wants is never built: it answers whether any sink's ``min_level`` admits
    the type's level, or a sink names the type in its ``wanted_types``, from
    a per-type cache rebuilt whenever the sinks change.  A sink that raises
    is counted in ``sink_errors`` and otherwise ignored.
    """

    __slots__ = ("_lock", "_pairs", "debug", "sink_errors", "sinks", "wants")

    def __init__(self, sinks: Iterable[Sink] = ()) -> None:
        self._lock = threading.Lock()
        self.sink_errors = 0
        self._set(tuple(sinks))

    def _set(self, sinks: tuple[Sink, ...]) -> None:
        levels = tuple(_level_of(s) for s in sinks)
        types = tuple(_types_of(s) for s in sinks)
        self._pairs = tuple(zip(sinks, levels, types, strict=True))
        self.sinks: tuple[Sink, ...] = sinks
        self.debug = any(level <= LEVELS["debug"] for level in levels)
        # A fresh cache per set of sinks, holding its own floor: a reader never mixes
        # the old sinks' answer with the new ones.  ``wants`` is the cache's C-level
        # __getitem__ (about 25 ns; a Python method call would double that).
        self.wants: Callable[[type[Event]], bool] = _Wanted(
            min(levels, default=_NOBODY), frozenset().union(*types)
        ).__getitem__

    def add(self, sink: Sink) -> None:
        with self._lock:
            self._set((*self.sinks, sink))

    def remove(self, sink: Sink) -> None:
        with self._lock:
            self._set(tuple(s for s in self.sinks if s is not sink))

    def clear(self) -> None:
        with self._lock:
            self._set(())

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to every sink that wants its level or its type; never raises."""
        level = LEVELS.get(event.level, 20)
        for sink, threshold, types in self._pairs:  # one tuple: add() cannot skew them
            if level < threshold and type(event) not in types:
                continue
            try:
                sink(event)
            except Exception:
                self.sink_errors += 1

    def __repr__(self) -> str:
        return f"EventBus({list(self.sinks)!r})"


default_bus = EventBus([StructlogSink()])
"""The bus every policy uses unless given ``events=``.  Starts with a structlog sink."""


def resolve_bus(events: EventBus | None) -> EventBus:
    """A policy's ``events=`` option: ``None`` is :data:`default_bus`, else an ``EventBus``."""
    if events is None:
        return default_bus
    if not isinstance(events, EventBus):
        raise ValueError(f"events must be an EventBus, got {events!r}")
    return events
