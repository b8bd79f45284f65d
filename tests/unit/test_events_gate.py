"""``EventBus.wants``: an event no sink would receive is never even constructed.

Each test counts constructions of the event classes (their ``__init__`` is
wrapped) while policies reject, fail and retry under a bus whose sinks do not
want those events, then checks that a bus whose sinks do want them gets them.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest

from resilience import (
    Bulkhead,
    BulkheadFull,
    CircuitBreaker,
    CircuitOpen,
    FixedWindow,
    RateLimiter,
    retry,
)
from resilience.errors import StoreUnavailable
from resilience.events import (
    BulkheadRejected,
    CircuitStateChanged,
    Event,
    EventBus,
    RateLimitExceeded,
    RetryScheduled,
    StoreFailed,
    StructlogSink,
)
from resilience.retrying import Backoff
from resilience.testing import FakeClock

EVENT_TYPES = (
    BulkheadRejected,
    CircuitStateChanged,
    RateLimitExceeded,
    RetryScheduled,
    StoreFailed,
)


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts every construction of each event type, by class name."""
    counts: Counter[str] = Counter()
    for cls in EVENT_TYPES:
        original = cls.__init__

        def counting(self: Any, *args: Any, __original: Any = original, **kw: Any) -> None:
            counts[type(self).__name__] += 1
            __original(self, *args, **kw)

        monkeypatch.setattr(cls, "__init__", counting)
    return counts


class Collect:
    def __init__(self, min_level: str = "debug") -> None:
        self.min_level = min_level
        self.seen: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.seen.append(event)


class BrokenStore:
    """A store whose every decision fails as an outage would."""

    def table(self, algorithm: Any, now: Any, name: str) -> BrokenStore:
        return self

    def decide(self, key: str, cost: float, now: float) -> Any:
        raise StoreUnavailable("down")

    async def adecide(self, key: str, cost: float, now: float) -> Any:
        raise StoreUnavailable("down")

    def refund(self, key: str, cost: float, now: float) -> None:
        pass


def exercise(bus: EventBus) -> None:
    """Make every policy reject, fail, retry and change state once or more, sync and async."""
    clock = FakeClock()
    limiter = RateLimiter(FixedWindow(1, 1.0), clock=clock, events=bus)
    for _ in range(3):
        limiter.try_acquire("a")
    asyncio.run(limiter.atry_acquire("a"))
    broken = RateLimiter(FixedWindow(1, 1.0), store=BrokenStore(), clock=clock, events=bus)
    broken.try_acquire("a")
    asyncio.run(broken.atry_acquire("a"))

    bulkhead = Bulkhead("b", max_concurrent=1, events=bus)
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        inside.set()
        leave.wait(5)

    worker = threading.Thread(target=lambda: bulkhead.call(hold))
    worker.start()
    inside.wait(5)
    with pytest.raises(BulkheadFull):
        bulkhead.call(lambda: None)

    async def async_full() -> None:
        with pytest.raises(BulkheadFull):
            await bulkhead.acall(asyncio.sleep, 0)

    asyncio.run(async_full())
    leave.set()
    worker.join(5)

    async def queue_timeout() -> None:
        queued = Bulkhead("q", max_concurrent=1, max_queue=1, queue_timeout=0.01, events=bus)
        gate = asyncio.Event()
        holder = asyncio.ensure_future(queued.acall(gate.wait))
        await asyncio.sleep(0)
        with pytest.raises(BulkheadFull):
            await queued.acall(asyncio.sleep, 0)
        gate.set()
        await holder

    asyncio.run(queue_timeout())

    breaker = CircuitBreaker("c", consecutive_failures=1, clock=clock, events=bus)
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: None)

    attempts = iter([ValueError("once")])

    def flaky() -> str:
        for exc in attempts:
            raise exc
        return "ok"

    policy = retry(attempts=2, backoff=Backoff(initial=0.0, maximum=0.0), clock=clock, events=bus)
    assert policy.call(flaky) == "ok"


def test_nothing_is_built_for_a_bus_without_sinks(built: Counter[str]) -> None:
    exercise(EventBus())
    assert built == Counter()


def test_debug_events_are_not_built_for_the_default_info_level_log_sink(
    built: Counter[str],
) -> None:
    exercise(EventBus([StructlogSink(min_level="info")]))
    assert built["RateLimitExceeded"] == 0
    assert built["BulkheadRejected"] == 0
    # Warning/info events are wanted at info level and are built.
    assert built["StoreFailed"] >= 2
    assert built["CircuitStateChanged"] >= 1
    assert built["RetryScheduled"] == 1


def test_a_sink_that_wants_them_gets_every_event(built: Counter[str]) -> None:
    sink = Collect("debug")
    exercise(EventBus([sink]))
    kinds = Counter(type(e).__name__ for e in sink.seen)
    assert kinds["RateLimitExceeded"] == 3  # two sync rejections and one async
    assert kinds["BulkheadRejected"] == 3  # sync full, async full, queue timeout
    assert kinds["StoreFailed"] == 2
    assert kinds["CircuitStateChanged"] >= 1
    assert kinds["RetryScheduled"] == 1
    assert built == kinds  # nothing built and dropped


def test_wants_follows_the_sinks_and_their_levels() -> None:
    bus = EventBus()
    assert not any(bus.wants(cls) for cls in EVENT_TYPES)
    warning = Collect("warning")
    bus.add(warning)
    assert bus.wants(StoreFailed) and bus.wants(CircuitStateChanged)
    assert not bus.wants(RetryScheduled) and not bus.wants(BulkheadRejected)
    debug = Collect("debug")
    bus.add(debug)
    assert all(bus.wants(cls) for cls in EVENT_TYPES)
    bus.remove(debug)
    assert not bus.wants(RateLimitExceeded) and bus.wants(StoreFailed)
    bus.clear()
    assert not bus.wants(StoreFailed)


def test_sinks_added_after_a_policy_was_built_are_honoured(built: Counter[str]) -> None:
    bus = EventBus([StructlogSink(min_level="info")])
    limiter = RateLimiter(FixedWindow(1, 1.0), clock=FakeClock(), events=bus)
    limiter.try_acquire("a")
    limiter.try_acquire("a")
    assert built["RateLimitExceeded"] == 0
    sink = Collect("debug")
    bus.add(sink)
    limiter.try_acquire("a")
    assert [type(e) for e in sink.seen] == [RateLimitExceeded]
    bus.remove(sink)
    limiter.try_acquire("a")
    assert built["RateLimitExceeded"] == 1


# -- wanted_types: a sink names the debug events it counts -----------------------------------


class _Counting:
    """An info-level sink that also wants one debug-level type (as metrics sinks do)."""

    min_level = "info"
    wanted_types = frozenset({BulkheadRejected})

    def __init__(self) -> None:
        self.seen: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.seen.append(event)


def test_wanted_types_reach_a_sink_below_its_level_and_nothing_else() -> None:
    sink = _Counting()
    bus = EventBus([sink])
    assert bus.wants(BulkheadRejected)
    assert not bus.wants(RateLimitExceeded)  # other debug events are still not built
    bus.emit(BulkheadRejected("h", "full"))
    bus.emit(RateLimitExceeded("l", "k", 1, 1.0))
    assert [type(e) for e in sink.seen] == [BulkheadRejected]


def test_wanted_types_are_validated() -> None:
    class Bad:
        min_level = "info"
        wanted_types = (str,)

        def __call__(self, event: Event) -> None:
            pass

    with pytest.raises(ValueError, match="wanted_types"):
        EventBus([Bad()])


def test_metrics_table_entries_are_delivered_at_debug_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The extension point works for per-request events: one table line, no other debug event."""
    prometheus_client = pytest.importorskip("prometheus_client")
    from resilience import prometheus

    monkeypatch.setitem(
        prometheus.EVENT_METRICS,
        BulkheadRejected,
        lambda sink, e: sink.tracker.count("bulkhead", e.policy, "shed_by_event"),
    )
    registry = prometheus_client.CollectorRegistry()
    sink = prometheus.PrometheusSink(registry)
    bus = EventBus([sink])
    assert bus.wants(BulkheadRejected) and not bus.wants(RateLimitExceeded)
    bus.emit(BulkheadRejected("pool", "full"))
    labels = {"pattern": "bulkhead", "policy": "pool", "outcome": "shed_by_event"}
    assert registry.get_sample_value("resilience_decisions_total", labels) == 1
