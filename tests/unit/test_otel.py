"""resilience.otel with the OpenTelemetry SDK's in-memory metric reader and span exporter."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from resilience import (
    Backoff,
    Bulkhead,
    CircuitBreaker,
    EventBus,
    FixedWindow,
    RateLimiter,
    compose,
    retry,
)
from resilience.errors import BulkheadFull, CircuitOpen
from resilience.events import RateLimitExceeded
from resilience.otel import INSTRUMENT_NAMES, OtelSink
from resilience.testing import FakeClock

Points = dict[tuple[str, tuple[tuple[str, Any], ...]], Any]


def points(reader: InMemoryMetricReader) -> Points:
    """Every data point of one collection: (instrument, sorted attributes) -> point."""
    found: Points = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    found[(metric.name, tuple(sorted(point.attributes.items())))] = point
    return found


def at(found: Points, name: str, **attributes: Any) -> Any:
    return found[(name, tuple(sorted(attributes.items())))]


class Setup:
    def __init__(self, **options: Any) -> None:
        self.reader = InMemoryMetricReader()
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.tracer_provider.get_tracer("test")
        self.sink = OtelSink(MeterProvider(metric_readers=[self.reader]), **options)
        self.bus = EventBus([self.sink])


async def test_instruments_match_what_happened() -> None:
    s = Setup()
    clock = FakeClock()
    limiter = RateLimiter(FixedWindow(2, 60.0), name="api", clock=clock, events=s.bus)
    breaker = CircuitBreaker("up", consecutive_failures=1, clock=clock, events=s.bus)
    bulkhead = Bulkhead("pool", max_concurrent=1, events=s.bus)
    s.sink.track(limiter, breaker, bulkhead)

    for _ in range(5):
        limiter.try_acquire("k")
    with pytest.raises(RuntimeError):
        breaker.call(lambda: (_ for _ in ()).throw(RuntimeError("down")))
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: 1)

    gate = asyncio.Event()
    held = asyncio.create_task(bulkhead.acall(gate.wait))
    await asyncio.sleep(0)
    with pytest.raises(BulkheadFull):
        await bulkhead.acall(gate.wait)
    during = points(s.reader)
    gate.set()
    await held

    failures = iter([ConnectionError(), ConnectionError()])

    def flaky() -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "ok"

    work = compose(
        s.sink.timed("work"),
        retry(
            attempts=3,
            on=(ConnectionError,),
            backoff=Backoff(initial=0.1, maximum=0.1, jitter=None),
            clock=FakeClock(),
            name="work-retry",
            events=s.bus,
        ),
    )
    assert work.call(flaky) == "ok"
    after = points(s.reader)

    dec = "resilience.decisions"
    assert at(after, dec, pattern="rate_limiter", policy="api", outcome="allowed").value == 2
    assert at(after, dec, pattern="rate_limiter", policy="api", outcome="rejected").value == 3
    assert at(after, dec, pattern="circuit_breaker", policy="up", outcome="allowed").value == 1
    assert at(after, dec, pattern="circuit_breaker", policy="up", outcome="rejected").value == 1
    assert at(after, dec, pattern="bulkhead", policy="pool", outcome="rejected").value == 1
    assert at(after, "resilience.circuit.state", policy="up", state="open").value == 1
    assert at(after, "resilience.circuit.state", policy="up", state="closed").value == 0
    transition = {"policy": "up", "from_state": "closed", "to_state": "open"}
    assert at(after, "resilience.circuit.transitions", **transition).value == 1
    assert at(during, "resilience.bulkhead.active", policy="pool").value == 1
    assert at(during, "resilience.bulkhead.limit", policy="pool").value == 1
    assert at(after, "resilience.bulkhead.active", policy="pool").value == 0
    assert at(after, "resilience.retry.attempts", policy="work-retry").value == 2
    duration = at(after, "resilience.call.duration", policy="work", outcome="ok")
    assert duration.count == 1
    assert {name for name, _ in after} == set(INSTRUMENT_NAMES)


def test_span_events_on_the_current_span() -> None:
    s = Setup(min_level="debug")
    clock = FakeClock()
    limiter = RateLimiter(FixedWindow(1, 60.0), name="api", clock=clock, events=s.bus)
    breaker = CircuitBreaker("up", consecutive_failures=1, clock=clock, events=s.bus)
    with s.tracer.start_as_current_span("request"):
        limiter.try_acquire("203.0.113.7")
        limiter.try_acquire("203.0.113.7")
        with pytest.raises(RuntimeError):
            breaker.call(lambda: (_ for _ in ()).throw(RuntimeError("down")))
    limiter.try_acquire("outside any span")  # no current span: nothing recorded, no error
    (span,) = s.exporter.get_finished_spans()
    names = [event.name for event in span.events]
    assert names == ["resilience.rate_limited", "resilience.circuit_state_changed"]
    rejected = span.events[0].attributes
    assert rejected is not None
    assert rejected["policy"] == "api"
    assert rejected["retry_after"] > 0
    assert "203.0.113.7" not in str(dict(rejected))  # the key never leaves as an attribute
    changed = span.events[1].attributes
    assert changed is not None
    assert (changed["from_state"], changed["to_state"]) == ("closed", "open")
    assert s.bus.sink_errors == 0


def test_span_events_can_be_turned_off() -> None:
    s = Setup(span_events=False, min_level="debug")
    limiter = RateLimiter(FixedWindow(1, 60.0), name="api", clock=FakeClock(), events=s.bus)
    assert s.bus.wants(RateLimitExceeded)  # delivered, but no span event
    with s.tracer.start_as_current_span("request"):
        limiter.try_acquire()
        limiter.try_acquire()
    (span,) = s.exporter.get_finished_spans()
    assert span.events == ()


def test_default_level_builds_no_rejection_events() -> None:
    s = Setup()
    limiter = RateLimiter(FixedWindow(1, 60.0), name="api", clock=FakeClock(), events=s.bus)
    assert not s.bus.wants(RateLimitExceeded)
    with s.tracer.start_as_current_span("request"):
        limiter.try_acquire()
        limiter.try_acquire()
    (span,) = s.exporter.get_finished_spans()
    assert span.events == ()
    assert limiter.tally.rejected == 1  # still counted, for resilience.decisions


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="min_level"):
        OtelSink(MeterProvider(), min_level="loud")
    with pytest.raises(ValueError, match="span_events"):
        OtelSink(MeterProvider(), span_events="yes")  # type: ignore[arg-type]
