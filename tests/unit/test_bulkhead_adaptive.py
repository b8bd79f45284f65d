"""AdaptiveBulkhead and its limit algorithms, driven by a FakeClock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from resilience.bulkhead import AIMD, AdaptiveBulkhead, Gradient, LimitAlgorithm
from resilience.errors import BulkheadFull
from resilience.events import EventBus
from resilience.testing import FakeClock

# -- algorithms (pure) -------------------------------------------------------------


def test_aimd_adds_when_busy_and_fast_and_multiplies_down_when_slow_or_dropped() -> None:
    aimd = AIMD(0.5, decrease=0.5, increase=2)
    assert aimd.update(10, 0.1, inflight=5, dropped=False) == 12
    assert aimd.update(10, 0.1, inflight=2, dropped=False) == 10  # not using the limit
    assert aimd.update(10, 0.6, inflight=9, dropped=False) == 5
    assert aimd.update(10, 0.1, inflight=9, dropped=True) == 5


def test_gradient_grows_at_steady_latency_and_shrinks_when_latency_rises() -> None:
    g = Gradient(smoothing=1.0)
    limit = 16.0
    for _ in range(5):
        limit = g.update(limit, 0.1, inflight=int(limit), dropped=False)
    assert limit > 16.0
    grown = limit
    for _ in range(5):
        limit = g.update(limit, 1.0, inflight=int(limit), dropped=False)
    assert limit < grown
    assert g.baseline > 0.1


def test_gradient_holds_when_idle_and_halves_on_drop() -> None:
    g = Gradient(smoothing=1.0)
    assert g.update(40.0, 0.1, inflight=1, dropped=False) == 40.0
    assert g.update(16.0, 0.1, inflight=0, dropped=True) == pytest.approx(16 * 0.5 + 4)


def test_gradient_ignores_non_positive_latency() -> None:
    g = Gradient()
    assert g.update(10.0, 0.0, inflight=10, dropped=False) == 10.0
    assert g.baseline == 0.0


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: AIMD(0), "latency_threshold"),
        (lambda: AIMD(1, decrease=1.5), "decrease"),
        (lambda: AIMD(1, increase=0), "increase"),
        (lambda: Gradient(tolerance=0.5), "tolerance"),
        (lambda: Gradient(smoothing=0), "smoothing"),
        (lambda: Gradient(long_window=0), "long_window"),
    ],
)
def test_algorithm_configuration_is_validated(factory: Any, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        factory()


# -- the bulkhead -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_limit": 0}, "min_limit"),
        ({"min_limit": 5, "max_limit": 4}, "max_limit"),
        ({"initial_limit": 500}, "initial_limit"),
        ({"algorithm": "magic"}, "algorithm"),
        ({"algorithm": "aimd"}, "latency_threshold"),
    ],
)
def test_bad_configuration_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AdaptiveBulkhead("a", **kwargs)


def test_defaults() -> None:
    b = AdaptiveBulkhead("a")
    assert (b.limit, b.min_limit, b.max_limit) == (20, 1, 200)
    assert isinstance(b.algorithm, Gradient)
    assert "AdaptiveBulkhead" in repr(b)


async def run_round(b: AdaptiveBulkhead, clock: FakeClock, width: int, rtt: float) -> None:
    """`width` concurrent calls that each take `rtt` seconds of fake time."""
    gate = asyncio.Event()
    tasks = [asyncio.create_task(b.acall(gate.wait)) for _ in range(width)]
    await asyncio.sleep(0)
    clock.advance(rtt)
    gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)


async def test_limit_grows_under_steady_latency_and_shrinks_when_it_rises() -> None:
    clock = FakeClock()
    b = AdaptiveBulkhead(
        "a", min_limit=2, max_limit=64, initial_limit=8, clock=clock, events=EventBus()
    )
    for _ in range(20):
        await run_round(b, clock, b.limit, 0.05)
    grown = b.limit
    assert grown > 8
    assert grown <= 64
    for _ in range(20):
        await run_round(b, clock, b.limit, 1.0)
    assert b.limit < grown
    assert b.limit >= 2
    assert (b.active, b.queued) == (0, 0)


async def test_aimd_bulkhead_backs_off_on_timeouts() -> None:
    clock = FakeClock()
    b = AdaptiveBulkhead(
        "a", initial_limit=10, algorithm="aimd", latency_threshold=0.5, clock=clock
    )

    async def times_out() -> None:
        raise TimeoutError

    for _ in range(5):
        with pytest.raises(TimeoutError):
            await b.acall(times_out)
    assert b.limit == 5  # 10 * 0.9**5 = 5.9 -> 5
    assert b.active == 0


def test_sync_calls_feed_the_algorithm() -> None:
    clock = FakeClock()
    b = AdaptiveBulkhead("a", min_limit=1, initial_limit=4, algorithm=AIMD(0.5), clock=clock)

    def slow() -> int:
        clock.advance(1.0)
        return 1

    for _ in range(3):
        assert b.call(slow) == 1
    assert b.limit == 2  # 4 -> 3.6 -> 3.24 -> 2.9
    with pytest.raises(ValueError, match="boom"):
        b.call(lambda: (_ for _ in ()).throw(ValueError("boom")))
    assert b.limit == 2  # other errors are not samples
    assert b.active == 0


def test_limit_never_leaves_bounds_and_a_faulty_algorithm_leaks_nothing() -> None:
    class Wild(LimitAlgorithm):
        def __init__(self) -> None:
            self.calls = 0

        def update(self, limit: float, rtt: float, inflight: int, dropped: bool) -> float:
            self.calls += 1
            if self.calls % 3 == 0:
                raise ArithmeticError("bad algorithm")
            return 1e9 if self.calls % 2 else -5.0

    b = AdaptiveBulkhead("a", min_limit=3, max_limit=7, initial_limit=5, algorithm=Wild())
    seen = set()
    for _ in range(9):
        b.call(lambda: None)
        seen.add(b.limit)
    assert seen <= {3, 5, 7}
    assert b.active == 0


async def test_shrunk_limit_refuses_and_grown_limit_admits_waiters() -> None:
    clock = FakeClock()
    b = AdaptiveBulkhead(
        "a",
        min_limit=1,
        max_limit=4,
        initial_limit=1,
        algorithm=AIMD(0.5, increase=3),
        max_queue=5,
        clock=clock,
        events=EventBus(),
    )
    gate = asyncio.Event()
    first = asyncio.create_task(b.acall(gate.wait))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(b.acall(asyncio.sleep, 0)) for _ in range(3)]
    await asyncio.sleep(0)
    assert (b.active, b.queued) == (1, 3)
    gate.set()
    await first  # fast and busy: limit 1 -> 4, so all three waiters get a slot
    assert b.limit == 4
    await asyncio.wait_for(asyncio.gather(*waiting), 10)
    assert (b.active, b.queued) == (0, 0)
    b2 = AdaptiveBulkhead("b", initial_limit=1, max_queue=0, events=EventBus())
    hold = asyncio.Event()
    task = asyncio.create_task(b2.acall(hold.wait))
    await asyncio.sleep(0)
    with pytest.raises(BulkheadFull):
        await b2.acall(asyncio.sleep, 0)
    hold.set()
    await task
