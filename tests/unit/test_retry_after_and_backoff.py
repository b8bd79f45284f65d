"""Retry-After parsing, Backoff curves and jitter bounds, RetryBudget accounting."""

from __future__ import annotations

import datetime
import math
import random
import sys
import threading
from typing import Any

import pytest
import tenacity

from resilience.retrying import Backoff, RetryBudget, parse_retry_after, retry_after_of
from resilience.testing import FakeClock

NOW = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT

# -- parse_retry_after ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("1.5", 1.5),
        (b"30", 30.0),
        (7, 7.0),
        (2.5, 2.5),
        (-3, 0.0),
        (datetime.timedelta(seconds=9), 9.0),
        ("Tue, 14 Nov 2023 22:13:50 GMT", 30.0),
        ("Tue, 14 Nov 2023 22:00:00 GMT", 0.0),  # in the past
        ("Tuesday, 14-Nov-23 22:13:25 GMT", 5.0),  # obsolete RFC 850 form
        ("Tue Nov 14 22:13:21 2023", 1.0),  # asctime form
        (datetime.datetime(2023, 11, 14, 22, 14, 20, tzinfo=datetime.UTC), 60.0),
    ],
)
def test_parses_seconds_and_dates(value: object, expected: float) -> None:
    assert parse_retry_after(value, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value",
    [None, True, "", "soon", "-5", "1e3", "12abc", b"\xff\xfe", "9" * 100, float("nan"), object()],
)
def test_malformed_values_are_ignored(value: object) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_absurd_numbers_are_clamped_not_crashing() -> None:
    assert parse_retry_after("9" * 60, now=NOW) == pytest.approx(1e60)
    assert parse_retry_after(float("inf")) == sys.float_info.max


def test_dates_default_to_the_wall_clock() -> None:
    assert parse_retry_after("Mon, 01 Jan 2001 00:00:00 GMT") == 0.0


class WithAttr(Exception):
    def __init__(self, value: Any) -> None:
        super().__init__()
        self.retry_after = value


class WithHeaders(Exception):
    def __init__(self, headers: Any) -> None:
        super().__init__()
        self.headers = headers


class BrokenResponse(Exception):
    @property
    def response(self) -> Any:
        raise RuntimeError("no response attached")


def test_retry_after_of_reads_attributes_and_headers() -> None:
    assert retry_after_of(WithAttr(3)) == 3.0
    assert retry_after_of(WithAttr("4")) == 4.0
    assert retry_after_of(WithAttr(math.inf)) == math.inf
    assert retry_after_of(WithHeaders({"Retry-After": "8"})) == 8.0
    assert retry_after_of(WithHeaders({"retry-after": "9"})) == 9.0
    date = "Tue, 14 Nov 2023 22:13:30 GMT"
    assert retry_after_of(WithHeaders({"Retry-After": date}), lambda: NOW) == 10.0
    assert retry_after_of(ValueError()) is None
    assert retry_after_of(WithHeaders(None)) is None
    assert retry_after_of(WithHeaders(42)) is None  # no .get
    assert retry_after_of(BrokenResponse()) is None


# -- Backoff --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"initial": -1}, "initial"),
        ({"initial": float("inf")}, "initial"),
        ({"maximum": 0.01}, "maximum"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"multiplier": float("nan")}, "multiplier"),
        ({"jitter": "half"}, "jitter"),
    ],
)
def test_backoff_configuration_is_validated(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Backoff(**kwargs)


def test_backoff_curve_is_exponential_and_capped() -> None:
    b = Backoff(initial=0.5, maximum=5.0, multiplier=3.0, jitter=None)
    assert [b.base(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 5.0, 5.0]
    assert b.base(10_000) == 5.0
    assert b.base(10**12) == 5.0
    assert b.delay(10_000) == 5.0


def test_flat_backoffs() -> None:
    assert Backoff(initial=0.0, jitter=None).delay(50) == 0.0
    assert Backoff(initial=2.0, maximum=10.0, multiplier=1.0, jitter=None).delay(10_000) == 2.0
    assert Backoff(initial=3.0, maximum=3.0, jitter=None).delay(7) == 3.0


@pytest.mark.parametrize("jitter", ["full", "equal", "decorrelated", None])
def test_jitter_stays_within_bounds(jitter: Any) -> None:
    b = Backoff(initial=0.2, maximum=4.0, multiplier=2.0, jitter=jitter, rng=random.Random(3))
    previous = 0.0
    for n in range(1, 200):
        d = b.delay(n, previous)
        assert 0.0 <= d <= 4.0
        if jitter == "equal":
            assert d >= b.base(n) / 2
        if jitter == "decorrelated":
            assert d >= 0.2
        previous = d


def test_backoff_is_a_tenacity_wait_strategy() -> None:
    b = Backoff(initial=1.0, maximum=8.0, jitter=None)
    clock = FakeClock()
    retrying = tenacity.Retrying(
        wait=b, stop=tenacity.stop_after_attempt(4), sleep=clock.sleep, reraise=True
    )
    with pytest.raises(ValueError, match="x"):
        retrying(lambda: (_ for _ in ()).throw(ValueError("x")))
    assert clock.sleeps == [1.0, 2.0, 4.0]


def test_backoff_equality_and_repr() -> None:
    assert Backoff() == Backoff(0.1, 10.0, 2.0, "full")
    assert Backoff() != Backoff(jitter=None)
    assert hash(Backoff()) == hash(Backoff())
    assert "jitter='full'" in repr(Backoff())
    assert Backoff().__eq__(3) is NotImplemented


# -- RetryBudget -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ratio": -0.1}, "ratio"),
        ({"min_per_second": float("inf")}, "min_per_second"),
        ({"window": 0}, "window"),
        ({"buckets": 0}, "buckets"),
    ],
)
def test_budget_configuration_is_validated(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RetryBudget(**kwargs)


def test_budget_reserve_then_ratio() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_second=0.5, window=10.0, clock=clock)
    assert budget.available() == 5.0
    assert [budget.try_spend() for _ in range(6)] == [True] * 5 + [False]
    for _ in range(10):
        budget.deposit()
    assert budget.try_spend()
    assert budget.try_spend()
    assert not budget.try_spend()


def test_budget_window_slides() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0, clock=clock)
    assert budget.try_spend()
    assert not budget.try_spend()
    clock.advance(5.0)
    assert not budget.try_spend()
    clock.advance(6.0)  # the retry at t=0 is now more than a window (plus a bucket) ago
    assert budget.try_spend()
    clock.advance(1000.0)  # a long idle gap resets everything
    assert budget.available() == 1.0
    assert "ratio=0.0" in repr(budget)


def test_budget_is_thread_safe() -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=10.0, window=10.0)  # 100 retries
    granted: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def spend() -> None:
        barrier.wait(10)
        mine = [budget.try_spend() for _ in range(50)]
        with lock:
            granted.extend(mine)

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert granted.count(True) == 100


def test_decorrelated_jitter_needs_a_positive_initial() -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=0.0, jitter="decorrelated")
