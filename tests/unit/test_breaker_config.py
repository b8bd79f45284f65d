"""Every breaker option is validated at construction, and the error names it."""

from __future__ import annotations

from typing import Any

import pytest

from resilience.breaker import CircuitBreaker, CountWindow, TimeWindow
from resilience.events import EventBus


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"failure_rate_threshold": 0}, "failure_rate_threshold"),
        ({"failure_rate_threshold": 1.5}, "failure_rate_threshold"),
        ({"failure_rate_threshold": float("nan")}, "failure_rate_threshold"),
        ({"failure_rate_threshold": True}, "failure_rate_threshold"),
        ({"failure_rate_threshold": "0.5"}, "failure_rate_threshold"),
        ({"minimum_calls": 0}, "minimum_calls"),
        ({"minimum_calls": 2.0}, "minimum_calls"),
        ({"minimum_calls": 101}, "minimum_calls"),
        ({"window": 100}, "window"),
        ({"consecutive_failures": 0}, "consecutive_failures"),
        ({"consecutive_failures": False}, "consecutive_failures"),
        ({"slow_call_duration": 0}, "slow_call_duration"),
        ({"slow_call_duration": float("inf")}, "slow_call_duration"),
        ({"slow_call_rate_threshold": 0.0}, "slow_call_rate_threshold"),
        ({"slow_call_rate_threshold": 2}, "slow_call_rate_threshold"),
        ({"open_duration": -1}, "open_duration"),
        ({"open_duration": float("nan")}, "open_duration"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
        ({"half_open_max_calls": None}, "half_open_max_calls"),
        ({"record": "ValueError"}, "record"),
        ({"record": (ValueError, 3)}, "record"),
        ({"ignore": [KeyError, "oops"]}, "ignore"),  # lists allowed; items checked
        ({"failure_if": 503}, "failure_if"),
        ({"clock": object()}, "clock"),
        ({"store": object()}, "store"),
        ({"events": [print]}, "events"),
        ({"failure_rate_threshold": None}, "failure_rate_threshold"),
    ],
)
def test_bad_option_names_its_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        CircuitBreaker("b", **kwargs)


@pytest.mark.parametrize("name", ["", None, 3])
def test_name_must_be_a_non_empty_string(name: Any) -> None:
    with pytest.raises(ValueError, match="name"):
        CircuitBreaker(name)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: CountWindow(0), "size"),
        (lambda: CountWindow(2.5), "size"),  # type: ignore[arg-type]
        (lambda: TimeWindow(0), "seconds"),
        (lambda: TimeWindow(float("inf")), "seconds"),
        (lambda: TimeWindow(10, buckets=0), "buckets"),
        (lambda: TimeWindow(10, buckets=1_000_000), "buckets"),
    ],
)
def test_bad_window_names_its_field(build: Any, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        build()


def test_defaults_follow_the_contract() -> None:
    breaker = CircuitBreaker("defaults", events=EventBus())
    config = breaker.config
    assert config.window == CountWindow(100)
    assert config.decider.failure_rate_threshold == 0.5
    assert config.decider.minimum_calls == 10
    assert config.decider.consecutive_failures is None
    assert config.decider.slow_call_rate_threshold is None  # no slow_call_duration
    assert config.open_duration == 30.0
    assert config.half_open_max_calls == 1
    assert breaker.state == "closed"


def test_single_exception_classes_are_accepted() -> None:
    CircuitBreaker("one", record=OSError, ignore=KeyError)


def test_only_consecutive_failures_is_a_valid_trigger() -> None:
    CircuitBreaker("consecutive", failure_rate_threshold=None, consecutive_failures=3)


def test_time_window_buckets() -> None:
    window = TimeWindow(seconds=60)
    assert window.buckets == 10
    assert window.width == 6.0
    assert TimeWindow(2, buckets=4).width == 0.5
