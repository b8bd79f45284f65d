"""``breaker.guard()`` / ``aguard()``: a block protected, timed and classified by the breaker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from resilience.breaker import CircuitBreaker, CircuitState, CountWindow
from resilience.errors import CircuitOpen
from resilience.events import EventBus
from resilience.testing import FakeClock


def breaker(clock: FakeClock, **options: Any) -> CircuitBreaker:
    options.setdefault("minimum_calls", 2)
    options.setdefault("window", CountWindow(2))
    return CircuitBreaker("g", clock=clock, events=EventBus(), open_duration=10.0, **options)


def test_a_raising_block_counts_as_failed_and_an_open_circuit_refuses() -> None:
    b = breaker(FakeClock())
    for _ in range(2):
        with pytest.raises(OSError), b.guard():
            raise OSError
    assert b.state is CircuitState.OPEN
    with pytest.raises(CircuitOpen), b.guard():
        pytest.fail("an open circuit must not run the block")


def test_refuse_false_enters_and_reports_nothing() -> None:
    b = breaker(FakeClock())
    b.force_open()
    with b.guard(refuse=False) as g:
        assert not g.allowed and g.permit.retry_after == 10.0
    assert b.snapshot().calls == 0


def test_the_guard_times_itself_for_slow_calls() -> None:
    clock = FakeClock()
    b = breaker(
        clock,
        slow_call_duration=1.0,
        slow_call_rate_threshold=0.5,
        failure_rate_threshold=None,
        minimum_calls=3,
        window=CountWindow(3),
    )
    for seconds in (2.0, 0.5, 2.0):
        with b.guard():
            clock.advance(seconds)
        if seconds == 0.5:
            snapshot = b.snapshot()
            assert (snapshot.calls, snapshot.slow_calls) == (2, 1)
    assert b.state is CircuitState.OPEN  # 2 of 3 calls were slow


def test_record_applies_failure_if_and_verdicts_override_exceptions() -> None:
    b = breaker(
        FakeClock(),
        failure_if=lambda value: value == "bad",
        minimum_calls=10,
        window=CountWindow(10),
    )
    with b.guard() as g:
        g.record("bad")
    with b.guard() as g:
        g.record("good")
    assert b.snapshot().failures == 1
    with pytest.raises(KeyError), b.guard() as g:
        g.succeed()  # e.g. a 404 from a web framework raised as an exception
        raise KeyError
    assert (b.snapshot().calls, b.snapshot().failures) == (3, 1)
    with pytest.raises(KeyError), b.guard() as g:
        g.fail()
        raise KeyError
    assert (b.snapshot().calls, b.snapshot().failures) == (4, 2)


async def test_aguard_matches_guard() -> None:
    clock = FakeClock()
    b = breaker(clock, slow_call_duration=1.0)
    async with b.aguard() as g:
        await asyncio.sleep(0)
        g.fail()
    with pytest.raises(OSError):
        async with b.aguard():
            raise OSError
    assert await b.astate() is CircuitState.OPEN
    with pytest.raises(CircuitOpen):
        async with b.aguard():
            pytest.fail("refused")
    clock.advance(10.0)
    async with b.aguard() as g:  # the half-open probe
        assert g.permit.state is CircuitState.HALF_OPEN
    assert await b.astate() is CircuitState.CLOSED


async def test_a_cancelled_probe_fails() -> None:
    clock = FakeClock()
    b = breaker(clock)
    b.force_open()
    b.reset()
    for _ in range(2):
        with pytest.raises(OSError), b.guard():
            raise OSError
    clock.advance(10.0)
    with pytest.raises(asyncio.CancelledError):
        async with b.aguard():
            raise asyncio.CancelledError
    assert b.state is CircuitState.OPEN
