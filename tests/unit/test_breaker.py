"""Circuit breaker behaviour, one rule per test, on a fake clock."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from resilience.breaker import CircuitBreaker, CircuitState, CountWindow, TimeWindow
from resilience.errors import CircuitOpen, ResilienceError
from resilience.events import CircuitStateChanged, Event, EventBus
from resilience.testing import FakeClock


class Down(Exception):
    pass


def ok() -> str:
    return "ok"


def down() -> str:
    raise Down("dependency down")


def attempt(breaker: CircuitBreaker, fn: Callable[[], Any]) -> str:
    """Run one call and say what happened."""
    try:
        breaker.call(fn)
    except CircuitOpen:
        return "rejected"
    except Exception:
        return "raised"
    return "ok"


def make(clock: FakeClock | None = None, **kwargs: Any) -> tuple[CircuitBreaker, list[Event]]:
    events: list[Event] = []
    kwargs.setdefault("minimum_calls", 4)
    kwargs.setdefault("window", CountWindow(10))
    breaker = CircuitBreaker(
        "dep", clock=clock or FakeClock(), events=EventBus([events.append]), **kwargs
    )
    return breaker, events


def state(breaker: CircuitBreaker) -> CircuitState:
    """The breaker's state, read through a call so mypy does not narrow it between calls."""
    return breaker.state


def changes(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.old, e.new, e.reason) for e in events if isinstance(e, CircuitStateChanged)]


# -- opening -----------------------------------------------------------------------------


def test_stays_closed_below_minimum_calls() -> None:
    breaker, _ = make()
    for _ in range(3):
        attempt(breaker, down)
    assert state(breaker) is CircuitState.CLOSED
    assert breaker.snapshot().failures == 3


def test_opens_when_failure_rate_reaches_threshold() -> None:
    breaker, events = make()
    for fn in (ok, down, ok, down):
        attempt(breaker, fn)
    assert state(breaker) is CircuitState.OPEN
    assert changes(events) == [("closed", "open", "failure_rate")]


def test_a_success_that_completes_minimum_calls_can_open() -> None:
    breaker, _ = make(minimum_calls=4)
    for fn in (down, down, ok):
        attempt(breaker, fn)
    assert state(breaker) is CircuitState.CLOSED
    attempt(breaker, ok)  # 2 of 4 failed: 50 %
    assert state(breaker) is CircuitState.OPEN


def test_count_window_forgets_old_calls() -> None:
    breaker, _ = make(window=CountWindow(4), minimum_calls=4, failure_rate_threshold=0.75)
    for fn in (down, down, ok, ok, ok, ok, down, down):
        attempt(breaker, fn)
    snap = breaker.snapshot()
    assert (snap.calls, snap.failures) == (4, 2)
    assert state(breaker) is CircuitState.CLOSED


def test_consecutive_failures_open_regardless_of_minimum_calls() -> None:
    breaker, events = make(
        failure_rate_threshold=None, consecutive_failures=3, window=CountWindow(100)
    )
    for fn in (down, down, ok, down, down):
        attempt(breaker, fn)
    assert state(breaker) is CircuitState.CLOSED
    assert breaker.snapshot().consecutive_failures == 2
    attempt(breaker, down)
    assert state(breaker) is CircuitState.OPEN
    assert changes(events)[-1][2] == "consecutive_failures"


def test_slow_call_rate_opens() -> None:
    clock = FakeClock()

    def slow() -> str:
        clock.advance(2.0)
        return "late"

    breaker, events = make(
        clock, slow_call_duration=1.0, slow_call_rate_threshold=0.5, failure_rate_threshold=None
    )
    for fn in (ok, slow, ok):
        attempt(breaker, fn)
    snap = breaker.snapshot()
    assert (snap.calls, snap.slow_calls, snap.failures) == (3, 1, 0)
    attempt(breaker, slow)
    assert state(breaker) is CircuitState.OPEN
    assert changes(events) == [("closed", "open", "slow_call_rate")]


def test_slow_failures_count_as_both() -> None:
    clock = FakeClock()

    def slow_down() -> str:
        clock.advance(5.0)
        raise Down

    breaker, _ = make(clock, slow_call_duration=1.0, minimum_calls=10)
    attempt(breaker, slow_down)
    snap = breaker.snapshot()
    assert (snap.calls, snap.failures, snap.slow_calls) == (1, 1, 1)


def test_time_window_drops_old_buckets() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, window=TimeWindow(seconds=10, buckets=5), minimum_calls=3)
    attempt(breaker, down)
    attempt(breaker, down)
    clock.advance(4.0)
    assert breaker.snapshot().calls == 2  # still inside the window
    attempt(breaker, ok)
    assert state(breaker) is CircuitState.OPEN  # 2 of 3 failed

    breaker.reset()
    attempt(breaker, down)
    attempt(breaker, down)
    clock.advance(10.0)  # both failures' bucket has left the window
    assert breaker.snapshot().calls == 0
    for fn in (ok, ok, down):
        attempt(breaker, fn)
    assert breaker.snapshot().failures == 1
    assert state(breaker) is CircuitState.CLOSED


def test_time_window_slides_bucket_by_bucket() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, window=TimeWindow(seconds=4, buckets=4), minimum_calls=10)
    for _ in range(4):
        attempt(breaker, ok)
        clock.advance(1.0)
    assert breaker.snapshot().calls == 3  # the current, empty bucket plus three before it
    clock.advance(2.0)
    assert breaker.snapshot().calls == 1


# -- open and half-open ---------------------------------------------------------------------


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(4):
        attempt(breaker, down)
    assert state(breaker) is CircuitState.OPEN


def test_open_rejects_with_retry_after() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, open_duration=30.0)
    trip(breaker)
    clock.advance(12.0)
    with pytest.raises(CircuitOpen) as info:
        breaker.call(ok)
    assert info.value.retry_after == pytest.approx(18.0)
    assert info.value.name == "dep"
    assert isinstance(info.value, ResilienceError)
    assert "'dep' is open" in str(info.value)


def test_circuit_open_pickles() -> None:
    clock = FakeClock()
    breaker, _ = make(clock)
    trip(breaker)
    with pytest.raises(CircuitOpen) as info:
        breaker.call(ok)
    copy = pickle.loads(pickle.dumps(info.value))
    assert isinstance(copy, CircuitOpen)
    assert (copy.name, copy.retry_after) == ("dep", info.value.retry_after)


def test_retrying_exactly_retry_after_later_gets_a_probe() -> None:
    clock = FakeClock(1234.5678)
    breaker, _ = make(clock, open_duration=0.1)
    trip(breaker)
    clock.advance(0.03)
    retry_after = breaker.permit().retry_after
    clock.advance(retry_after)
    assert breaker.permit().allowed


def test_half_open_after_open_duration_then_closes_on_success() -> None:
    clock = FakeClock()
    breaker, events = make(clock, open_duration=5.0)
    trip(breaker)
    clock.advance(5.0)
    assert state(breaker) is CircuitState.HALF_OPEN  # what the next call would meet
    assert attempt(breaker, ok) == "ok"
    assert state(breaker) is CircuitState.CLOSED
    assert breaker.snapshot().calls == 0  # a fresh window
    assert changes(events) == [
        ("closed", "open", "failure_rate"),
        ("open", "half_open", "open_duration_elapsed"),
        ("half_open", "closed", "probes_succeeded"),
    ]


def test_failed_probe_reopens_for_a_full_open_duration() -> None:
    clock = FakeClock()
    breaker, events = make(clock, open_duration=5.0)
    trip(breaker)
    clock.advance(6.0)
    assert attempt(breaker, down) == "raised"
    assert state(breaker) is CircuitState.OPEN
    assert breaker.snapshot().retry_after == pytest.approx(5.0)
    assert changes(events)[-1] == ("half_open", "open", "probe_failed")


def test_half_open_admits_exactly_max_calls_and_needs_all_to_succeed() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, half_open_max_calls=3, open_duration=1.0)
    trip(breaker)
    clock.advance(1.0)
    permits = [breaker.permit() for _ in range(5)]
    assert [p.allowed for p in permits] == [True, True, True, False, False]
    assert all(p.retry_after > 0 for p in permits[3:])
    breaker.on_success(permits[0])
    breaker.on_success(permits[1])
    assert state(breaker) is CircuitState.HALF_OPEN
    assert not breaker.permit().allowed  # slots are used up even after two finished
    breaker.on_success(permits[2])
    assert state(breaker) is CircuitState.CLOSED


def test_a_failure_racing_successes_in_half_open_wins() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, half_open_max_calls=2, open_duration=1.0)
    trip(breaker)
    clock.advance(1.0)
    first, second = breaker.permit(), breaker.permit()
    breaker.on_success(first)
    breaker.on_failure(second)
    assert state(breaker) is CircuitState.OPEN
    breaker.on_success(first)  # a duplicate report changes nothing
    assert state(breaker) is CircuitState.OPEN


def test_slow_probes_reopen() -> None:
    clock = FakeClock()
    breaker, events = make(clock, slow_call_duration=1.0, open_duration=1.0)
    trip(breaker)
    clock.advance(1.0)
    probe = breaker.permit()
    breaker.on_success(probe, duration=3.0)
    assert state(breaker) is CircuitState.OPEN
    assert changes(events)[-1] == ("half_open", "open", "slow_call_rate")


def test_failures_while_open_do_not_extend_the_timer() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, open_duration=10.0)
    late = breaker.permit()  # admitted while closed, finishes after the circuit opened
    trip(breaker)
    clock.advance(8.0)
    breaker.on_failure(late)
    assert breaker.snapshot().retry_after == pytest.approx(2.0)
    clock.advance(2.0)
    assert breaker.permit().allowed


def test_late_outcomes_from_an_earlier_round_are_ignored() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, open_duration=1.0)
    trip(breaker)
    clock.advance(1.0)
    old_probe = breaker.permit()
    breaker.force_open()
    breaker.reset()
    breaker.on_failure(old_probe)
    assert state(breaker) is CircuitState.CLOSED
    assert breaker.snapshot().failures == 0


# -- classification --------------------------------------------------------------------------


def test_ignored_exceptions_count_as_nothing() -> None:
    breaker, _ = make(ignore=(KeyError,))

    def missing() -> str:
        raise KeyError("x")

    for _ in range(10):
        with pytest.raises(KeyError):
            breaker.call(missing)
    assert breaker.snapshot().calls == 0


def test_ignore_wins_over_record() -> None:
    breaker, _ = make(record=(LookupError,), ignore=(KeyError,))
    with pytest.raises(KeyError):
        breaker.call(lambda: {"a": 1}["x"])
    assert breaker.snapshot().calls == 0


def test_exceptions_outside_record_count_as_successes() -> None:
    breaker, _ = make(record=(ConnectionError,))

    def bad_input() -> str:
        raise ValueError("caller's fault")

    for _ in range(4):
        with pytest.raises(ValueError):
            breaker.call(bad_input)
    snap = breaker.snapshot()
    assert (snap.calls, snap.failures) == (4, 0)

    def refused() -> str:
        raise ConnectionError

    for _ in range(4):
        with pytest.raises(ConnectionError):
            breaker.call(refused)
    assert state(breaker) is CircuitState.OPEN


def test_failure_if_marks_results_as_failures() -> None:
    breaker, _ = make(failure_if=lambda response: response["status"] >= 500)
    for status in (200, 503, 200, 503):
        assert breaker.call(dict, status=status)["status"] == status
    assert state(breaker) is CircuitState.OPEN


def test_failure_if_that_raises_propagates_and_counts_nothing() -> None:
    def broken(result: object) -> bool:
        raise TypeError("predicate bug")

    breaker, _ = make(failure_if=broken)
    with pytest.raises(TypeError):
        breaker.call(ok)
    assert breaker.snapshot().calls == 0


def test_failure_if_in_half_open() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, failure_if=lambda r: r == "bad", open_duration=1.0)
    for _ in range(4):
        breaker.call(lambda: "bad")
    clock.advance(1.0)
    breaker.call(lambda: "bad")
    assert state(breaker) is CircuitState.OPEN


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_interrupts_never_count(exc: type[BaseException]) -> None:
    clock = FakeClock()
    breaker, _ = make(clock, record=(BaseException,), open_duration=1.0)

    def interrupted() -> str:
        raise exc

    for _ in range(5):
        with pytest.raises(exc):
            breaker.call(interrupted)
    assert breaker.snapshot().calls == 0
    trip(breaker)
    clock.advance(1.0)
    with pytest.raises(exc):
        breaker.call(interrupted)  # a probe interrupted: its slot is freed, nothing counted
    assert state(breaker) is CircuitState.HALF_OPEN
    assert breaker.snapshot().probes_in_flight == 0
    assert attempt(breaker, ok) == "ok"
    assert state(breaker) is CircuitState.CLOSED


async def test_cancelled_closed_call_is_not_a_failure() -> None:
    breaker, _ = make(minimum_calls=1, window=CountWindow(1))

    async def hang() -> None:
        await asyncio.sleep(60)

    task = asyncio.create_task(breaker.acall(hang))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state(breaker) is CircuitState.CLOSED
    assert breaker.snapshot().calls == 0


@pytest.mark.parametrize("window", [CountWindow(10), TimeWindow(10)])
async def test_cancelled_probe_frees_its_slot_and_counts_as_failure(window: Any) -> None:
    clock = FakeClock()
    breaker, events = make(clock, open_duration=1.0, window=window)
    trip(breaker)
    clock.advance(1.0)

    async def hang() -> None:
        await asyncio.sleep(60)

    task = asyncio.create_task(breaker.acall(hang))
    await asyncio.sleep(0)
    assert breaker.snapshot().probes_in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state(breaker) is CircuitState.OPEN
    assert changes(events)[-1] == ("half_open", "open", "probe_failed")


async def test_timed_out_probe_counts_as_failure() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, open_duration=1.0)
    trip(breaker)
    clock.advance(1.0)

    async def hang() -> None:
        await asyncio.sleep(60)

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await breaker.acall(hang)
    assert state(breaker) is CircuitState.OPEN


# -- operator controls ---------------------------------------------------------------------------


def test_force_open_holds_past_open_duration() -> None:
    clock = FakeClock()
    breaker, events = make(clock, open_duration=1.0)
    breaker.force_open()
    clock.advance(100.0)
    assert state(breaker) is CircuitState.OPEN
    with pytest.raises(CircuitOpen) as info:
        breaker.call(ok)
    assert info.value.retry_after == 1.0
    assert breaker.snapshot().held
    assert changes(events) == [("closed", "open", "forced_open")]


def test_force_closed_never_trips_but_keeps_counting() -> None:
    clock = FakeClock()
    breaker, events = make(clock, consecutive_failures=2)
    trip(breaker)
    breaker.force_closed()
    for _ in range(20):
        attempt(breaker, down)
    snap = breaker.snapshot()
    assert snap.state is CircuitState.CLOSED and snap.held
    assert (snap.calls, snap.failures) == (10, 10)
    assert changes(events)[-1] == ("open", "closed", "forced_closed")


def test_reset_clears_the_window_and_releases_holds() -> None:
    breaker, events = make()
    breaker.force_closed()
    for _ in range(6):
        attempt(breaker, down)
    breaker.reset()
    snap = breaker.snapshot()
    assert (snap.calls, snap.held) == (0, False)
    for _ in range(4):
        attempt(breaker, down)
    assert state(breaker) is CircuitState.OPEN
    assert changes(events) == [("closed", "open", "failure_rate")]  # no event: closed -> closed


def test_reset_from_open() -> None:
    breaker, events = make()
    trip(breaker)
    breaker.reset()
    assert state(breaker) is CircuitState.CLOSED
    assert changes(events)[-1] == ("open", "closed", "reset")


async def test_async_controls_and_manual_api() -> None:
    clock = FakeClock()
    breaker, events = make(clock, open_duration=1.0)
    await breaker.aforce_open()
    assert await breaker.astate() is CircuitState.OPEN
    await breaker.aforce_closed()
    await breaker.areset()
    permit = await breaker.apermit()
    await breaker.aon_failure(permit)
    await breaker.aon_success(await breaker.apermit())
    await breaker.arelease(await breaker.apermit())
    snap = await breaker.asnapshot()
    assert (snap.calls, snap.failures) == (2, 1)
    assert [c[2] for c in changes(events)] == ["forced_open", "forced_closed"]


# -- events ----------------------------------------------------------------------------------------


def test_events_carry_the_breaker_name_and_level() -> None:
    breaker, events = make()
    trip(breaker)
    (event,) = events
    assert isinstance(event, CircuitStateChanged)
    assert event.policy == "dep"
    assert event.level == "warning"
    assert event.fields() == {
        "policy": "dep",
        "old": "closed",
        "new": "open",
        "reason": "failure_rate",
    }


def test_a_raising_sink_never_breaks_the_call() -> None:
    def boom(event: Event) -> None:
        raise RuntimeError("sink down")

    seen: list[Event] = []
    bus = EventBus([boom, seen.append])
    clock = FakeClock()
    breaker = CircuitBreaker(
        "dep", minimum_calls=2, window=CountWindow(2), clock=clock, events=bus, open_duration=1
    )
    assert attempt(breaker, down) == "raised"
    assert attempt(breaker, down) == "raised"  # opens; the sink raises inside
    assert attempt(breaker, ok) == "rejected"
    clock.advance(1)
    assert breaker.call(ok) == "ok"  # two more transitions, two more sink errors
    assert bus.sink_errors == 3
    assert len(seen) == 3


def test_silent_bus_builds_no_events() -> None:
    bus = EventBus()
    breaker = CircuitBreaker("quiet", minimum_calls=1, window=CountWindow(1), events=bus)
    attempt(breaker, down)
    assert state(breaker) is CircuitState.OPEN
    assert bus.sink_errors == 0


# -- decorator -------------------------------------------------------------------------------------


def test_decorator_sync() -> None:
    breaker, _ = make()

    @breaker
    def fetch(x: int, *, y: int = 1) -> int:
        """Fetch."""
        return x + y

    assert fetch(1, y=2) == 3
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch."
    assert fetch.__resilience_policy__ is breaker  # type: ignore[attr-defined]
    trip(breaker)
    with pytest.raises(CircuitOpen):
        fetch(1)


async def test_decorator_async() -> None:
    breaker, _ = make(failure_if=lambda r: r < 0)

    @breaker
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        return x

    assert await fetch(5) == 5
    for _ in range(3):
        assert await fetch(-1) == -1
    assert state(breaker) is CircuitState.OPEN  # 3 of 4 results were failures
    with pytest.raises(CircuitOpen):
        await fetch(1)


async def test_acall_with_time_window_and_failures() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, window=TimeWindow(10), open_duration=1.0)

    async def fail() -> None:
        raise Down

    async def fine() -> str:
        return "ok"

    for _ in range(4):
        with pytest.raises(Down):
            await breaker.acall(fail)
    with pytest.raises(CircuitOpen):
        await breaker.acall(fine)
    clock.advance(1.0)
    assert await breaker.acall(fine) == "ok"
    assert state(breaker) is CircuitState.CLOSED


def test_repr_mentions_name_and_state() -> None:
    breaker, _ = make()
    assert "dep" in repr(breaker) and "closed" in repr(breaker)


async def test_manual_error_reporting_classifies_like_a_protected_call() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "manual",
        consecutive_failures=1,
        open_duration=5.0,
        ignore=(LookupError,),
        clock=clock,
        events=EventBus(),
    )
    permit = await breaker.apermit()
    await breaker.aon_error(permit, KeyError("ignored"), clock.monotonic())
    assert breaker.state is CircuitState.CLOSED
    permit = await breaker.apermit()
    await breaker.aon_error(permit, asyncio.CancelledError(), clock.monotonic())
    assert breaker.state is CircuitState.CLOSED  # a cancelled closed call says nothing
    permit = breaker.permit()
    breaker.on_error(permit, RuntimeError("down"), clock.monotonic())
    assert breaker.state is CircuitState.OPEN
    clock.advance(5.0)
    probe = await breaker.apermit()
    assert probe.allowed
    await breaker.aon_error(probe, asyncio.CancelledError(), clock.monotonic())
    assert breaker.state is CircuitState.OPEN  # a cancelled half-open probe is a failure
