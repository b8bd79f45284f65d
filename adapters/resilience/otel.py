"""OpenTelemetry export (``pip install resilience-patterns[otel]``, on ``opentelemetry-api``).

    from resilience import default_bus
    from resilience.otel import OtelSink

    telemetry = OtelSink()                # the global MeterProvider, unless meter_provider=
    default_bus.add(telemetry)            # counters, and span events on the current span
    telemetry.track(limiter, breaker, bulkhead)   # decisions and gauges, observed at collection
    guarded = compose(telemetry.timed("payments"), breaker)   # resilience.call.duration

The same metrics as :mod:`resilience.prometheus`, as OTel instruments
(attributes are low-cardinality: ``pattern``, ``policy``, ``outcome``,
``state``; never a client key, URL or principal):

- ``resilience.decisions`` (observable counter; ``pattern``, ``policy``, ``outcome``)
- ``resilience.circuit.state`` (observable gauge, 1 for the current state; ``policy``, ``state``)
- ``resilience.circuit.transitions`` (counter; ``policy``, ``from_state``, ``to_state``)
- ``resilience.bulkhead.active`` / ``.queued`` / ``.limit`` (observable gauges; ``policy``)
- ``resilience.retry.attempts`` (counter; ``policy``)
- ``resilience.call.duration`` (histogram, seconds; ``policy``, ``outcome``)
- ``resilience.events`` (counter; ``policy``, ``kind``)

Span events: a rejection, a breaker transition, a retry or a store failure
is added as an event (``resilience.rate_limited``, ...) to the span current
where it happened, so a trace shows why a request was refused or slow.
Rejections are debug-level events: they reach this sink (and become span
events) only with ``min_level="debug"``.  The default, ``"info"``, keeps
them from being built at all, because recording through the OTel SDK costs
~15 us per event (benchmarks/RESULTS.md) and rejections come in floods;
they are counted in ``resilience.decisions`` either way.  The rate-limit key
is left out of span attributes (it can be an address or a hashed credential).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Counter, MeterProvider, Observation

from resilience.events import (
    LEVELS,
    BulkheadRejected,
    CircuitStateChanged,
    Event,
    FailoverAttempt,
    FailoverSwitched,
    IdempotencyConflict,
    IdempotentReplay,
    RateLimitExceeded,
    RetryScheduled,
    StoreFailed,
)
from resilience.metrics import Timed, Tracker

__all__ = ["EVENT_METRICS", "INSTRUMENT_NAMES", "SPAN_EVENTS", "OtelSink"]

CIRCUIT_STATES = ("closed", "open", "half_open")
Attributes = dict[str, str | int | float]

EVENT_METRICS: dict[type[Event], Callable[[OtelSink, Any], None]] = {
    CircuitStateChanged: lambda sink, e: sink.transitions.add(
        1, {"policy": e.policy, "from_state": e.old, "to_state": e.new}
    ),
    RetryScheduled: lambda sink, e: sink.retries.add(1, {"policy": e.policy}),
    # One line per event type; the sink receives every type listed here, debug-level
    # ones included (``wanted_types``).
    IdempotentReplay: lambda sink, e: sink.tracker.count("idempotency", e.policy, "replayed"),
    IdempotencyConflict: lambda sink, e: sink.tracker.count("idempotency", e.policy, e.reason),
    FailoverAttempt: lambda sink, e: sink.tracker.count("failover", e.policy, "failed_over"),
    FailoverSwitched: lambda sink, e: sink.tracker.count("failover", e.policy, "switched"),
}
"""Event type -> how it updates the instruments (besides ``resilience.events``)."""

SPAN_EVENTS: dict[type[Event], Callable[[Any], Attributes]] = {
    RateLimitExceeded: lambda e: {"retry_after": e.retry_after, "cost": e.cost},
    BulkheadRejected: lambda e: {"reason": e.reason},
    CircuitStateChanged: lambda e: {"from_state": e.old, "to_state": e.new, "reason": e.reason},
    RetryScheduled: lambda e: {"attempt": e.attempt, "delay": e.delay, "error": e.error},
    StoreFailed: lambda e: {"operation": e.operation, "action": e.action, "error": e.error},
    IdempotentReplay: lambda e: {},  # never the key: it may identify a client
    IdempotencyConflict: lambda e: {"reason": e.reason},
    FailoverAttempt: lambda e: {"origin": e.origin, "to": e.to, "reason": e.reason},
    FailoverSwitched: lambda e: {"old": e.old, "new": e.new, "reason": e.reason},
}
"""Event type -> the attributes of the span event it becomes (plus ``policy``)."""

INSTRUMENT_NAMES = (
    "resilience.decisions",
    "resilience.circuit.state",
    "resilience.circuit.transitions",
    "resilience.bulkhead.active",
    "resilience.bulkhead.queued",
    "resilience.bulkhead.limit",
    "resilience.retry.attempts",
    "resilience.call.duration",
    "resilience.events",
)


class OtelSink:
    """An event sink that feeds OTel instruments and span events; observes tracked policies."""

    transitions: Counter
    tracker: Tracker
    retries: Counter

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        min_level: str = "info",
        span_events: bool = True,
    ) -> None:
        if min_level not in LEVELS:
            raise ValueError(f"min_level must be one of {list(LEVELS)}, got {min_level!r}")
        if not isinstance(span_events, bool):
            raise ValueError(f"span_events must be a bool, got {span_events!r}")
        self.min_level = min_level
        self.span_events = span_events
        self.tracker = Tracker()
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter("resilience-patterns")
        self.events = meter.create_counter(
            "resilience.events", unit="{event}", description="Resilience events by policy and kind."
        )
        self.transitions = meter.create_counter(
            "resilience.circuit.transitions",
            unit="{transition}",
            description="Circuit breaker state transitions.",
        )
        self.retries = meter.create_counter(
            "resilience.retry.attempts",
            unit="{attempt}",
            description="Retries scheduled (attempts after the first).",
        )
        self.durations = meter.create_histogram(
            "resilience.call.duration",
            unit="s",
            description="Duration of calls timed by OtelSink.timed, by outcome.",
        )
        meter.create_observable_counter(
            "resilience.decisions",
            [self._observe_decisions],
            unit="{decision}",
            description="Decisions taken by resilience policies, by outcome.",
        )
        meter.create_observable_gauge(
            "resilience.circuit.state",
            [self._observe_states],
            description="1 for the circuit breaker's current state, 0 for the others.",
        )
        for field, index, text in (
            ("active", 0, "Calls running in the bulkhead."),
            ("queued", 1, "Calls waiting for a bulkhead slot."),
            ("limit", 2, "The bulkhead's concurrency limit."),
        ):
            meter.create_observable_gauge(
                f"resilience.bulkhead.{field}",
                [self._bulkhead_observer(index)],
                unit="{call}",
                description=text,
            )

    @property
    def wanted_types(self) -> frozenset[type[Event]]:
        """The event types of :data:`EVENT_METRICS`, received whatever their level."""
        return frozenset(EVENT_METRICS)

    def __call__(self, event: Event) -> None:
        self.events.add(1, {"policy": event.policy, "kind": event.kind})
        update = EVENT_METRICS.get(type(event))
        if update is not None:
            update(self, event)
        if self.span_events:
            attributes_of = SPAN_EVENTS.get(type(event))
            if attributes_of is not None:
                span = trace.get_current_span()
                if span.is_recording():
                    attributes = attributes_of(event)
                    attributes["policy"] = event.policy
                    span.add_event(f"resilience.{event.kind}", attributes)

    def track(self, *policies: Any) -> None:
        """Observe these rate limiters, breakers and bulkheads (decisions, state, gauges)."""
        self.tracker.track(*policies)

    def timed(self, name: str) -> Timed:
        """A policy recording each call's duration in ``resilience.call.duration``."""
        return Timed(name, self.observe)

    def observe(self, name: str, outcome: str, seconds: float) -> None:
        self.durations.record(seconds, {"policy": name, "outcome": outcome})

    def _observe_decisions(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(value, {"pattern": pattern, "policy": name, "outcome": outcome})
            for (pattern, name, outcome), value in sorted(self.tracker.decisions().items())
        ]

    def _observe_states(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(1 if state == current else 0, {"policy": name, "state": state})
            for name, current in sorted(self.tracker.breaker_states().items())
            for state in CIRCUIT_STATES
        ]

    def _bulkhead_observer(self, index: int) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(values[index], {"policy": name})
                for name, values in sorted(self.tracker.bulkheads().items())
            ]

        return observe

    def __repr__(self) -> str:
        return f"OtelSink(min_level={self.min_level!r}, span_events={self.span_events})"
