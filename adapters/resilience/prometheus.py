"""Prometheus export (``pip install resilience-patterns[prometheus]``).

    from prometheus_client import start_http_server
    from resilience import default_bus
    from resilience.prometheus import PrometheusSink

    metrics = PrometheusSink()            # registers on prometheus_client's default REGISTRY
    default_bus.add(metrics)              # events: breaker transitions, retries, store failures
    metrics.track(limiter, breaker, bulkhead)   # decisions and gauges, read at scrape time
    guarded = compose(metrics.timed("payments"), breaker, retry_policy)   # latency histogram

Two sources, chosen by cost (benchmarks/RESULTS.md): the allowed path emits
no event, so decisions are read at scrape time from each tracked policy's
:class:`~resilience.metrics.Tally` (an integer increment per decision, no
Prometheus call on the request path), and so are the breaker state and the
bulkhead gauges.  Events that are rare (state changes, retries, store
failures) update counters as they arrive, through :data:`EVENT_METRICS`: one
line per event type.

Labels are low-cardinality only: ``pattern``, ``policy`` (the name you gave),
``outcome``, ``state``.  The per-client key, URL or principal never becomes a
label: a label per client is how a metrics backend runs out of memory.

Exported (``resilience_`` prefix, configurable with ``namespace=``):

- ``decisions_total{pattern, policy, outcome}``: counter; outcome ``allowed`` /
  ``rejected`` (and ``replayed``, ``failed_over`` once those events are wired)
- ``circuit_state{policy, state}``: 1 for the breaker's current state, 0 for the others
- ``circuit_transitions_total{policy, from_state, to_state}``: counter
- ``bulkhead_active{policy}``, ``bulkhead_queued{policy}``, ``bulkhead_limit{policy}``: gauges
- ``retry_attempts_total{policy}``: counter of retries scheduled (attempts after the first)
- ``call_duration_seconds{policy, outcome}``: histogram of the calls that
  :meth:`PrometheusSink.timed` wraps
- ``events_total{policy, kind, outcome}``: every event the sink receives
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from resilience.events import (
    LEVELS,
    CircuitStateChanged,
    Event,
    FailoverAttempt,
    FailoverSwitched,
    IdempotencyConflict,
    IdempotentReplay,
    RetryScheduled,
    StoreFailed,
)
from resilience.metrics import Timed, Tracker

__all__ = ["EVENT_METRICS", "METRIC_NAMES", "PrometheusSink"]

CIRCUIT_STATES = ("closed", "open", "half_open")
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

EVENT_METRICS: dict[type[Event], Callable[[PrometheusSink, Any], None]] = {
    CircuitStateChanged: lambda sink, e: sink.transitions.labels(e.policy, e.old, e.new).inc(),
    RetryScheduled: lambda sink, e: sink.retries.labels(e.policy).inc(),
    # One line per event type; the sink receives every type listed here, debug-level
    # ones included (``wanted_types``).
    IdempotentReplay: lambda sink, e: sink.tracker.count("idempotency", e.policy, "replayed"),
    IdempotencyConflict: lambda sink, e: sink.tracker.count("idempotency", e.policy, e.reason),
    FailoverAttempt: lambda sink, e: sink.tracker.count("failover", e.policy, "failed_over"),
    FailoverSwitched: lambda sink, e: sink.tracker.count("failover", e.policy, "switched"),
}
"""Event type -> how it updates the metrics (besides ``events_total``, which counts all)."""

METRIC_NAMES = (
    "decisions_total",
    "circuit_state",
    "circuit_transitions_total",
    "bulkhead_active",
    "bulkhead_queued",
    "bulkhead_limit",
    "retry_attempts_total",
    "call_duration_seconds",
    "events_total",
)
"""Every metric exported, without the namespace prefix (the dashboards are checked against it)."""


class PrometheusSink:
    """An event sink plus a scrape-time collector of tracked policies.

    ``min_level="info"`` (the default) receives state changes, retries and
    store failures; rejections are counted from the policies' tallies, so the
    per-request debug events need not be built.  Pass ``"debug"`` to also
    count them in ``events_total``.
    """

    transitions: Counter
    tracker: Tracker
    retries: Counter

    def __init__(
        self,
        registry: CollectorRegistry = REGISTRY,
        namespace: str = "resilience",
        *,
        min_level: str = "info",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        if min_level not in LEVELS:
            raise ValueError(f"min_level must be one of {list(LEVELS)}, got {min_level!r}")
        if not namespace or not namespace.replace("_", "").isalnum():
            raise ValueError(f"namespace must be a metric name prefix, got {namespace!r}")
        self.min_level = min_level
        self.namespace = namespace
        self.tracker = Tracker()
        self.events = Counter(
            "events",
            "Resilience events by policy, kind and outcome.",
            ("policy", "kind", "outcome"),
            namespace=namespace,
            registry=registry,
        )
        self.transitions = Counter(
            "circuit_transitions",
            "Circuit breaker state transitions.",
            ("policy", "from_state", "to_state"),
            namespace=namespace,
            registry=registry,
        )
        self.retries = Counter(
            "retry_attempts",
            "Retries scheduled (attempts after the first).",
            ("policy",),
            namespace=namespace,
            registry=registry,
        )
        self.durations = Histogram(
            "call_duration_seconds",
            "Duration of calls timed by PrometheusSink.timed, by outcome.",
            ("policy", "outcome"),
            namespace=namespace,
            registry=registry,
            buckets=tuple(buckets),
        )
        registry.register(_PolicyCollector(self.tracker, namespace))

    @property
    def wanted_types(self) -> frozenset[type[Event]]:
        """The event types of :data:`EVENT_METRICS`, received whatever their level.

        So a per-request (debug) event added to the table, such as an
        idempotent replay, reaches this sink without every other debug event
        being built.  Read when the sink is added to a bus.
        """
        return frozenset(EVENT_METRICS)

    def __call__(self, event: Event) -> None:
        if isinstance(event, CircuitStateChanged):
            outcome = event.new
        elif isinstance(event, StoreFailed):
            outcome = event.action
        else:
            outcome = ""
        self.events.labels(event.policy, event.kind, outcome).inc()
        update = EVENT_METRICS.get(type(event))
        if update is not None:
            update(self, event)

    def track(self, *policies: Any) -> None:
        """Export these rate limiters, breakers and bulkheads (decisions, state, gauges)."""
        self.tracker.track(*policies)

    def timed(self, name: str) -> Timed:
        """A policy timing each call into ``call_duration_seconds{policy=name, outcome}``."""
        return Timed(name, self.observe)

    def observe(self, name: str, outcome: str, seconds: float) -> None:
        """Record one guarded call's duration (what :meth:`timed` calls)."""
        self.durations.labels(name, outcome).observe(seconds)

    def __repr__(self) -> str:
        return f"PrometheusSink(namespace={self.namespace!r}, min_level={self.min_level!r})"


class _PolicyCollector(Collector):
    """Reads the tracked policies when Prometheus scrapes: nothing runs per request."""

    def __init__(self, tracker: Tracker, namespace: str) -> None:
        self._tracker = tracker
        self._prefix = f"{namespace}_"

    def collect(self) -> Iterator[Any]:
        p = self._prefix
        decisions = CounterMetricFamily(
            f"{p}decisions",
            "Decisions taken by resilience policies, by outcome.",
            labels=("pattern", "policy", "outcome"),
        )
        for (pattern, name, outcome), value in sorted(self._tracker.decisions().items()):
            decisions.add_metric((pattern, name, outcome), value)
        yield decisions

        state = GaugeMetricFamily(
            f"{p}circuit_state",
            "1 for the circuit breaker's current state, 0 for the others.",
            labels=("policy", "state"),
        )
        for name, current in sorted(self._tracker.breaker_states().items()):
            for candidate in CIRCUIT_STATES:
                state.add_metric((name, candidate), 1.0 if candidate == current else 0.0)
        yield state

        active = GaugeMetricFamily(
            f"{p}bulkhead_active", "Calls running in the bulkhead.", labels=("policy",)
        )
        queued = GaugeMetricFamily(
            f"{p}bulkhead_queued", "Calls waiting for a bulkhead slot.", labels=("policy",)
        )
        limit = GaugeMetricFamily(
            f"{p}bulkhead_limit", "The bulkhead's concurrency limit.", labels=("policy",)
        )
        for name, (a, q, m) in sorted(self._tracker.bulkheads().items()):
            active.add_metric((name,), a)
            queued.add_metric((name,), q)
            limit.add_metric((name,), m)
        yield active
        yield queued
        yield limit

    def describe(self) -> Iterator[Any]:
        return iter(())  # dynamic: described only when collected
