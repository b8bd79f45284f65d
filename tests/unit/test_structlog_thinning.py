"""``StructlogSink`` thins repeated store failures: an outage is one log line per
``repeat_every``, not one per request, while counters and other sinks see every event."""

from __future__ import annotations

from typing import Any

import pytest

from resilience import RateLimiter, TokenBucket
from resilience.events import (
    CircuitStateChanged,
    Event,
    EventBus,
    StoreFailed,
    StructlogSink,
)
from resilience.testing import FakeClock
from tests.unit.test_limiter import BrokenStore

Line = tuple[str, str, dict[str, Any]]


class Logger:
    def __init__(self) -> None:
        self.lines: list[Line] = []

    def __getattr__(self, level: str) -> Any:
        return lambda kind, **fields: self.lines.append((level, kind, fields))


def failed(policy: str = "api", action: str = "fail_open") -> StoreFailed:
    return StoreFailed(policy, "decide", "StoreUnavailable: connection refused", action)


def test_one_line_per_window_then_the_count_left_out() -> None:
    clock, log = FakeClock(), Logger()
    sink = StructlogSink(log, repeat_every=10.0, clock=clock)
    for _ in range(1_000):
        sink(failed())
    assert len(log.lines) == 1 and "suppressed" not in log.lines[0][2]
    clock.advance(9.999)
    sink(failed())
    assert len(log.lines) == 1
    clock.advance(0.001)
    sink(failed())
    assert len(log.lines) == 2
    level, kind, fields = log.lines[1]
    assert (level, kind, fields["suppressed"]) == ("warning", "store_failed", 1_000)
    sink(failed())
    clock.advance(10.0)
    sink(failed())
    assert log.lines[2][2]["suppressed"] == 1


def test_each_policy_operation_and_action_is_thinned_on_its_own() -> None:
    clock, log = FakeClock(), Logger()
    sink = StructlogSink(log, clock=clock)
    for _ in range(5):
        sink(failed("a", "fail_open"))
        sink(failed("a", "fail_closed"))
        sink(failed("b", "fail_open"))
    assert [(f["policy"], f["action"]) for _, _, f in log.lines] == [
        ("a", "fail_open"),
        ("a", "fail_closed"),
        ("b", "fail_open"),
    ]


def test_other_events_and_repeat_every_zero_are_never_thinned() -> None:
    clock, log = FakeClock(), Logger()
    sink = StructlogSink(log, clock=clock)
    for _ in range(3):
        sink(CircuitStateChanged("db", "closed", "open", "failure_rate"))
    assert len(log.lines) == 3
    every = Logger()
    all_lines = StructlogSink(every, repeat_every=0, clock=clock)
    for _ in range(3):
        all_lines(failed())
    assert len(every.lines) == 3


def test_a_clock_that_steps_back_logs_again() -> None:
    clock, log = FakeClock(start=1_000.0), Logger()
    sink = StructlogSink(log, clock=clock)
    sink(failed())
    clock.step_back(500.0)  # NTP: "less than repeat_every ago" no longer holds
    sink(failed())
    assert len(log.lines) == 2


def test_an_outage_logs_once_while_counters_and_other_sinks_see_every_failure() -> None:
    clock, log = FakeClock(), Logger()
    everything: list[Event] = []
    bus = EventBus([StructlogSink(log, clock=clock), everything.append])
    limiter = RateLimiter(TokenBucket(5), store=BrokenStore(), clock=clock, events=bus)
    for _ in range(500):
        assert limiter.try_acquire("a").allowed  # fail_open
    assert limiter.store_errors == 500
    assert sum(isinstance(e, StoreFailed) for e in everything) == 500
    assert [kind for _, kind, _ in log.lines] == ["store_failed"]


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "10", True])
def test_repeat_every_is_validated(bad: object) -> None:
    with pytest.raises(ValueError, match="repeat_every"):
        StructlogSink(repeat_every=bad)  # type: ignore[arg-type]
