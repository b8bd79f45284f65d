"""Prometheus export of resilience events (``pip install resilience-patterns[prometheus]``).

``PrometheusSink`` counts events with low-cardinality labels only: the
policy name and the event kind (plus the outcome where one exists).  The
per-client key never becomes a label: a label per client is how a metrics
backend runs out of memory.

    from resilience import default_bus
    from resilience.prometheus import PrometheusSink
    default_bus.add(PrometheusSink())
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter

from resilience.events import (
    CircuitStateChanged,
    Event,
    StoreFailed,
)

__all__ = ["PrometheusSink"]


class PrometheusSink:
    """An event sink that increments ``resilience_events_total{policy, kind, outcome}``."""

    min_level = "debug"

    def __init__(
        self, registry: CollectorRegistry = REGISTRY, namespace: str = "resilience"
    ) -> None:
        self.events = Counter(
            "events",
            "Resilience events by policy, kind and outcome.",
            ("policy", "kind", "outcome"),
            namespace=namespace,
            registry=registry,
        )

    def __call__(self, event: Event) -> None:
        if isinstance(event, CircuitStateChanged):
            outcome = event.new
        elif isinstance(event, StoreFailed):
            outcome = event.action
        else:
            outcome = ""
        self.events.labels(event.policy, event.kind, outcome).inc()
