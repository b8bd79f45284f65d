"""The demo's verdict and fault script, without servers: a double charge fails the verdict."""

from __future__ import annotations

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("starlette")

from resilience.demo.metrics import Metrics, classify, percentile
from resilience.demo.origins import Charge, Ledger
from resilience.demo.scenario import Scenario
from resilience.demo.traffic import Payment
from resilience.demo.verdict import judge


def _world(double_charge: bool) -> tuple[Ledger, dict[str, Payment], Metrics]:
    ledger = Ledger()
    payments = {}
    metrics = Metrics()
    for number in range(5):
        key = f"k{number}"
        payments[key] = Payment(key, "paid-cy", 10, attempts=2, confirmed=True)
        ledger.charges.append(Charge(1.0, "primary", f"paid-cy:{key}", "paid-cy", 10))
        metrics.record(1.0 + number, "paid-cy", "POST", "2xx", 0.01)
    if double_charge:  # a retry that went through a second time, on the other origin
        ledger.charges.append(Charge(2.0, "secondary", "paid-cy:k3", "paid-cy", 10))
    for t in (5.5, 6.0):
        metrics.record(t, "free-mallory", "GET", "429", 0.001)
    return ledger, payments, metrics


def test_the_verdict_passes_on_a_clean_ledger() -> None:
    ledger, payments, metrics = _world(double_charge=False)
    scenario = Scenario(10.0, seed=1)
    verdict = judge(ledger, payments, metrics, scenario.phase("outage"), 2, 2)
    assert verdict.passed, verdict.checks
    assert verdict.charges == verdict.distinct_keys == 5


def test_a_double_charge_fails_the_verdict() -> None:
    ledger, payments, metrics = _world(double_charge=True)
    verdict = judge(ledger, payments, metrics, Scenario(10.0, 1).phase("outage"), 0, 0)
    failed = {check.name for check in verdict.checks if not check.ok}
    assert failed == {"no payment charged twice", "every confirmed payment charged exactly once"}
    assert not verdict.passed


def test_a_500_or_a_corrupt_receipt_fails_the_verdict() -> None:
    ledger, payments, metrics = _world(double_charge=False)
    metrics.record(9.0, "paid-di", "GET", classify(500, False), 0.01)
    verdict = judge(ledger, payments, metrics, Scenario(10.0, 1).phase("outage"), 3, 2)
    failed = {check.name for check in verdict.checks if not check.ok}
    assert failed == {"no 500s", "large receipts intact through the claim check"}


def test_phases_scale_with_the_duration_and_cover_it() -> None:
    for duration in (10.0, 20.0, 45.0):
        scenario = Scenario(duration, seed=1)
        assert scenario.phases[0].start == 0.0 and scenario.phases[-1].end == duration
        assert all(
            a.end == b.start for a, b in zip(scenario.phases[:-1], scenario.phases[1:], strict=True)
        )
        outage = scenario.phase("outage")
        assert scenario.fault("primary", (outage.start + outage.end) / 2).kind == "down"
        assert scenario.fault("secondary", (outage.start + outage.end) / 2).kind == "ok"


def test_outcomes_and_percentiles() -> None:
    assert [classify(s, r) for s, r in [(201, False), (200, True), (429, False), (502, False)]] == [
        "2xx",
        "replayed",
        "429",
        "5xx",
    ]
    assert percentile([], 0.5) == 0.0
    assert percentile([float(n) for n in range(1, 101)], 0.99) == 99.0
    assert percentile([float(n) for n in range(1, 101)], 0.5) == 50.0
