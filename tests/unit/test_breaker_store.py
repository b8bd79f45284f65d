"""The state-store seam: shared tables, and a non-local table driven only through async calls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from resilience.breaker import (
    BreakerConfig,
    BreakerSnapshot,
    BreakerStore,
    BreakerTable,
    CircuitBreaker,
    CircuitState,
    CountWindow,
    MemoryBreakerStore,
    MemoryBreakerTable,
    Permit,
    TimeWindow,
    Transition,
)
from resilience.errors import CircuitOpen
from resilience.events import EventBus
from resilience.testing import FakeClock


def down() -> None:
    raise OSError("down")


def breaker(store: Any, clock: FakeClock, **kwargs: Any) -> CircuitBreaker:
    kwargs.setdefault("minimum_calls", 2)
    kwargs.setdefault("window", CountWindow(2))
    return CircuitBreaker("shared", store=store, clock=clock, events=EventBus(), **kwargs)


def test_memory_store_and_table_satisfy_the_protocols() -> None:
    store = MemoryBreakerStore()
    assert isinstance(store, BreakerStore)
    table = store.breaker_table("x", BreakerConfig.build(), FakeClock().monotonic)
    assert isinstance(table, BreakerTable)
    assert isinstance(table, MemoryBreakerTable)


def test_breakers_with_one_name_share_a_circuit() -> None:
    store, clock = MemoryBreakerStore(), FakeClock()
    first, second = breaker(store, clock), breaker(store, clock)
    for _ in range(2):
        with pytest.raises(OSError):
            first.call(down)
    assert second.state is CircuitState.OPEN
    with pytest.raises(CircuitOpen):
        second.call(int)
    assert len(store) == 1


def test_a_new_breaker_never_resets_shared_state() -> None:
    store, clock = MemoryBreakerStore(), FakeClock()
    breaker(store, clock).force_open()
    assert breaker(store, clock).state is CircuitState.OPEN


def test_same_name_with_other_options_is_refused() -> None:
    store, clock = MemoryBreakerStore(), FakeClock()
    breaker(store, clock)
    with pytest.raises(ValueError, match="store"):
        breaker(store, clock, open_duration=1.0)


@pytest.mark.parametrize(
    ("options", "lock_free"),
    [
        ({}, True),
        ({"window": TimeWindow(10)}, False),
        ({"slow_call_duration": 1.0}, False),
    ],
)
def test_closed_shortcut_only_when_no_clock_is_needed(options: Any, lock_free: bool) -> None:
    b = CircuitBreaker("x", events=EventBus(), **options)
    table = b.store.breaker_table("x", b.config, b.clock.monotonic)
    assert (table.closed is not None) is lock_free
    b.force_open()
    assert table.closed is None


class RemoteLikeOps:
    """The async operations (``aio``) of a table behind an async-only client."""

    def __init__(self, inner: MemoryBreakerTable, calls: list[str]) -> None:
        self._inner = inner
        self.calls = calls

    async def state(self, now: float) -> CircuitState:
        self.calls.append("state")
        return self._inner.state(now)

    async def acquire(self, now: float) -> Permit:
        self.calls.append("acquire")
        return self._inner.acquire(now)

    async def record(
        self, permit: Permit, failed: bool, duration: float, now: float
    ) -> Transition | None:
        self.calls.append("record")
        return self._inner.record(permit, failed, duration, now)

    async def release(self, permit: Permit, now: float) -> None:
        self.calls.append("release")
        self._inner.release(permit, now)

    async def force(self, state: CircuitState, now: float) -> Transition | None:
        return self._inner.force(state, now)

    async def reset(self, now: float) -> Transition | None:
        return self._inner.reset(now)

    async def snapshot(self, now: float) -> BreakerSnapshot:
        return self._inner.snapshot(now)


class RemoteLikeTable:
    """A table whose sync side is unusable, like a store behind an async client."""

    local = False
    closed = None

    def __init__(self, config: BreakerConfig, now: Any) -> None:
        self._inner = MemoryBreakerTable(config, now)
        self.calls: list[str] = []
        self.aio = RemoteLikeOps(self._inner, self.calls)

    def _refuse(self, *args: Any) -> Any:
        raise AssertionError("a non-local table must be driven through its async methods")

    state = acquire = record = release = force = reset = snapshot = _refuse


class LegacyTable:
    """A table written to the old protocol: ``aacquire``, ``arecord``, ... and no ``aio``."""

    local = False
    closed = None

    def __init__(self, config: BreakerConfig, now: Any) -> None:
        ops = RemoteLikeOps(MemoryBreakerTable(config, now), [])
        self.astate, self.aacquire, self.arecord = ops.state, ops.acquire, ops.record
        self.arelease, self.aforce, self.areset = ops.release, ops.force, ops.reset
        self.asnapshot = ops.snapshot

    state = acquire = record = release = force = reset = snapshot = RemoteLikeTable._refuse


class LegacyStore:
    def breaker_table(self, name: str, config: BreakerConfig, now: Any) -> LegacyTable:
        return LegacyTable(config, now)


async def test_a_table_of_the_old_protocol_still_works_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="aio"):
        b = CircuitBreaker("old", store=LegacyStore(), events=EventBus(), clock=FakeClock())
    assert await b.acall(asyncio.sleep, 0, "ok") == "ok"
    await b.aforce_open()
    assert await b.astate() is CircuitState.OPEN


class RemoteLikeStore:
    def __init__(self) -> None:
        self.table: RemoteLikeTable | None = None

    def breaker_table(self, name: str, config: BreakerConfig, now: Any) -> RemoteLikeTable:
        self.table = RemoteLikeTable(config, now)
        return self.table


async def test_a_non_local_table_is_used_only_through_async_methods() -> None:
    store, clock = RemoteLikeStore(), FakeClock()
    events: list[Any] = []
    b = CircuitBreaker(
        "remote",
        failure_rate_threshold=1.0,
        minimum_calls=2,
        window=CountWindow(2),
        open_duration=1.0,
        clock=clock,
        store=store,
        events=EventBus([events.append]),
        ignore=KeyError,
    )

    async def fine() -> str:
        return "ok"

    async def fail() -> None:
        raise OSError

    async def ignored() -> None:
        raise KeyError

    assert await b.acall(fine) == "ok"
    with pytest.raises(KeyError):
        await b.acall(ignored)
    for _ in range(2):
        with pytest.raises(OSError):
            await b.acall(fail)
    with pytest.raises(CircuitOpen):
        await b.acall(fine)
    clock.advance(1.0)
    assert await b.acall(fine) == "ok"
    assert await b.astate() is CircuitState.CLOSED
    assert [(e.old, e.new) for e in events] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert store.table is not None
    assert "release" in store.table.calls and "record" in store.table.calls
    await b.aforce_open()
    assert (await b.asnapshot()).held


def test_the_old_module_path_of_the_value_types_still_imports_with_a_warning() -> None:
    import resilience.breaker.state as old

    with pytest.warns(DeprecationWarning, match="resilience.breaker"):
        assert old.Permit is Permit
    with pytest.raises(AttributeError):
        _ = old.nothing_here
