"""Retry never exceeds its attempts, its cap, its deadline or its budget (FakeClock)."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import random
from dataclasses import dataclass, field
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilience.events import EventBus
from resilience.retrying import Backoff, Jitter, RetryBudget, retry
from resilience.testing import FakeClock

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

jitters: st.SearchStrategy[Jitter] = st.sampled_from(
    cast(list[Jitter], ["full", "equal", "decorrelated", None])
)


@st.composite
def backoffs(draw: st.DrawFn) -> Backoff:
    jitter = draw(jitters)
    low = 1e-6 if jitter == "decorrelated" else 0.0  # decorrelated jitter grows from initial
    initial = draw(st.floats(low, 5.0, allow_nan=False))
    maximum = initial + draw(st.floats(0.0, 60.0, allow_nan=False))
    multiplier = draw(st.floats(1.0, 10.0, allow_nan=False))
    return Backoff(initial, maximum, multiplier, jitter, rng=random.Random(draw(st.integers())))


class Throttled(Exception):
    def __init__(self, retry_after: float | None) -> None:
        super().__init__("throttled")
        self.retry_after = retry_after


@dataclass
class Scenario:
    """A function failing `failures` times; each attempt takes `durations[i]` of fake time."""

    clock: FakeClock
    failures: int
    durations: list[float]
    retry_afters: list[float | None]
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    asked: list[float | None] = field(default_factory=list)

    def _attempt(self) -> str:
        i = len(self.starts)
        self.starts.append(self.clock.monotonic())
        self.clock.advance(self.durations[i % len(self.durations)])
        self.ends.append(self.clock.monotonic())
        if i < self.failures:
            asked = self.retry_afters[i % len(self.retry_afters)]
            self.asked.append(asked)
            raise Throttled(asked)
        return "ok"

    def sync(self) -> str:
        return self._attempt()

    async def async_(self) -> str:
        await asyncio.sleep(0)
        return self._attempt()


scenario_args = {
    "attempts": st.integers(1, 25),
    "backoff": backoffs(),
    "deadline": st.none() | st.floats(0.01, 200.0, allow_nan=False),
    "max_retry_after": st.floats(0.0, 100.0, allow_nan=False),
    "failures": st.integers(0, 30),
    "durations": st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=1, max_size=5),
    "retry_afters": st.lists(
        st.none() | st.floats(0.0, 1e7, allow_nan=False) | st.just(1_000_000.0),
        min_size=1,
        max_size=5,
    ),
}


def check(
    scenario: Scenario,
    outcome: Any,
    *,
    attempts: int,
    backoff: Backoff,
    deadline: float | None,
    max_retry_after: float,
) -> None:
    calls = len(scenario.starts)
    assert 1 <= calls <= attempts
    cap = max(backoff.maximum, max_retry_after)
    assert all(0.0 <= s <= cap and math.isfinite(s) for s in scenario.clock.sleeps)
    assert len(scenario.clock.sleeps) == calls - 1
    if deadline is not None:
        # Every attempt starts before the deadline (measured from the first one's start).
        assert all(s - scenario.starts[0] < deadline for s in scenario.starts)
    # Never sooner than asked: a retry starts no earlier than the failure before it asked,
    # and a failure asking for more than max_retry_after is the last attempt.
    for i in range(1, calls):
        asked = scenario.asked[i - 1]
        if asked is not None:
            assert asked <= max_retry_after
            assert scenario.starts[i] >= scenario.ends[i - 1] + asked
    if outcome == "ok":
        assert calls == scenario.failures + 1
    else:
        assert isinstance(outcome, Throttled)
        assert calls <= scenario.failures
        if deadline is None:
            last = scenario.asked[calls - 1]
            if last is not None and last > max_retry_after:
                pass  # gave up at once rather than retry sooner than asked
            else:
                assert calls == min(attempts, scenario.failures)


@SETTINGS
@given(**scenario_args)
def test_sync_never_exceeds_attempts_cap_or_deadline(
    attempts: int,
    backoff: Backoff,
    deadline: float | None,
    max_retry_after: float,
    failures: int,
    durations: list[float],
    retry_afters: list[float | None],
) -> None:
    clock = FakeClock()
    scenario = Scenario(clock, failures, durations, retry_afters)
    policy = retry(
        attempts=attempts,
        backoff=backoff,
        deadline=deadline,
        max_retry_after=max_retry_after,
        clock=clock,
        events=EventBus(),
    )
    try:
        outcome: Any = policy.call(scenario.sync)
    except Throttled as exc:
        outcome = exc
    check(
        scenario,
        outcome,
        attempts=attempts,
        backoff=backoff,
        deadline=deadline,
        max_retry_after=max_retry_after,
    )


@settings(SETTINGS, max_examples=60)
@given(**scenario_args)
def test_async_never_exceeds_attempts_cap_or_deadline(
    attempts: int,
    backoff: Backoff,
    deadline: float | None,
    max_retry_after: float,
    failures: int,
    durations: list[float],
    retry_afters: list[float | None],
) -> None:
    clock = FakeClock()
    scenario = Scenario(clock, failures, durations, retry_afters)
    policy = retry(
        attempts=attempts,
        backoff=backoff,
        deadline=deadline,
        max_retry_after=max_retry_after,
        clock=clock,
        events=EventBus(),
    )

    async def run() -> Any:
        try:
            return await policy.acall(scenario.async_)
        except Throttled as exc:
            return exc

    outcome = asyncio.run(run())
    check(
        scenario,
        outcome,
        attempts=attempts,
        backoff=backoff,
        deadline=deadline,
        max_retry_after=max_retry_after,
    )


@SETTINGS
@given(
    retry_number=st.integers(1, 10**9),
    backoff=backoffs(),
    previous=st.floats(0.0, 1e300, allow_nan=False),
)
def test_backoff_delay_is_finite_and_capped_for_any_attempt(
    retry_number: int, backoff: Backoff, previous: float
) -> None:
    d = backoff.delay(retry_number, previous)
    assert math.isfinite(d)
    assert 0.0 <= d <= backoff.maximum
    assert backoff.base(retry_number) <= backoff.maximum


# -- the budget ----------------------------------------------------------------------

WINDOW = 10.0
EIGHTHS = st.integers(0, 8 * 40).map(lambda n: n / 8)  # exact binary fractions


@SETTINGS
@given(
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0]),
    min_per_second=st.sampled_from([0.0, 0.1, 0.3, 1.0]),
    calls=st.lists(st.tuples(EIGHTHS, st.integers(0, 6), st.integers(1, 6)), max_size=60),
)
def test_budget_is_never_exceeded_in_any_window(
    ratio: float, min_per_second: float, calls: list[tuple[float, int, int]]
) -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=ratio, min_per_second=min_per_second, window=WINDOW, clock=clock)
    backoff = Backoff(0.125, 2.0, 2.0, jitter=None)
    requests: list[float] = []
    retries: list[float] = []  # when each retry was granted (scheduled, before its sleep)
    bus = EventBus([lambda event: retries.append(clock.monotonic())])
    for at, failures, attempts in sorted(calls):
        clock.set(at)
        policy = retry(attempts=attempts, backoff=backoff, budget=budget, clock=clock, events=bus)
        count = 0

        def fn(failures: int = failures) -> str:
            nonlocal count
            if not count:
                requests.append(clock.monotonic())
            count += 1
            if count <= failures:
                raise ValueError("down")
            return "ok"

        with contextlib.suppress(ValueError):
            policy.call(fn)
        assert count <= attempts

    reserve = min_per_second * WINDOW
    for t in retries:
        in_window_retries = bisect.bisect_right(retries, t) - bisect.bisect_right(
            retries, t - WINDOW
        )
        in_window_requests = bisect.bisect_right(requests, t) - bisect.bisect_right(
            requests, t - WINDOW
        )
        assert in_window_retries <= ratio * in_window_requests + reserve
