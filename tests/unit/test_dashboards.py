"""dashboards/grafana.json and dashboards/alerts.yml name only metrics, labels and values we export.

A registry is filled by the real exporter (tracked policies that allowed,
rejected, opened, queued; a retry; a timed call; a store failure), scraped
in the exposition format, and every PromQL expression of the dashboard and
the alert rules is checked against it: each ``resilience_*`` series exists,
each label it filters or groups by is a label of that series, and each
``label="value"`` matcher names a value the exporter produces.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from resilience import Bulkhead, CircuitBreaker, EventBus, FixedWindow, RateLimiter
from resilience.events import RetryScheduled, StoreFailed
from resilience.prometheus import PrometheusSink
from resilience.testing import FakeClock

ROOT = Path(__file__).resolve().parents[2]
SERIES = re.compile(r"\b(resilience_[a-z_]+)\b(\{[^}]*\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!=|!~|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
NOT_LABELS = {"le"}


def exported() -> dict[str, dict[str, set[str]]]:
    """Sample name -> label name -> values seen, from a real scrape of a busy exporter."""
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    bus = EventBus([sink])
    clock = FakeClock()
    limiter = RateLimiter(FixedWindow(1, 60.0), name="api", clock=clock, events=bus)
    breaker = CircuitBreaker("up", consecutive_failures=1, clock=clock, events=bus)
    bulkhead = Bulkhead("pool", events=bus)
    sink.track(limiter, breaker, bulkhead)
    limiter.try_acquire()
    limiter.try_acquire()
    with pytest.raises(RuntimeError):
        breaker.call(lambda: (_ for _ in ()).throw(RuntimeError()))
    bus.emit(RetryScheduled("work", 1, 0.1, "ConnectionError"))
    bus.emit(StoreFailed("api", "decide", "ConnectionError", "fail_open"))
    sink.timed("work").call(lambda: None)
    found: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            labels = found.setdefault(sample.name, {})
            for name, value in sample.labels.items():
                labels.setdefault(name, set()).add(value)
    return found


def expressions() -> Iterator[tuple[str, str]]:
    dashboard = json.loads((ROOT / "dashboards/grafana.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield f"grafana panel {panel['title']!r}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"grafana variable {variable['name']}", variable["definition"]
    rules = yaml.safe_load((ROOT / "dashboards/alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield f"alert {rule['alert']}", rule["expr"]


EXPORTED = exported()
CASES = list(expressions())


def test_files_are_well_formed() -> None:
    dashboard = json.loads((ROOT / "dashboards/grafana.json").read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    rules = yaml.safe_load((ROOT / "dashboards/alerts.yml").read_text())
    names = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    assert {"ResilienceHighRejectionRatio", "ResilienceCircuitOpen"} <= set(names)
    assert any("Bulkhead" in name for name in names)
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}
            assert rule["annotations"]["summary"]


@pytest.mark.parametrize(("where", "expr"), CASES, ids=[where for where, _ in CASES])
def test_every_named_series_label_and_value_exists(where: str, expr: str) -> None:
    series = SERIES.findall(expr)
    assert series, f"{where}: names no resilience metric"
    grouped = {
        label.strip()
        for labels in GROUPING.findall(expr)
        for label in labels.split(",")
        if label.strip()
    }
    for name, selector in series:
        assert name in EXPORTED, f"{where}: {name} is not exported"
        labels = EXPORTED[name]
        for label, op, value in MATCHER.findall(selector):
            assert label in labels, f"{where}: {name} has no label {label}"
            if op == "=" and not value.startswith("$"):
                assert value in labels[label], f"{where}: {name}{{{label}}} is never {value!r}"
        for label in grouped - NOT_LABELS:
            assert any(label in EXPORTED[n] for n, _ in series), f"{where}: no label {label}"
