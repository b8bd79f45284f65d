"""The bounded memory store behaves like an unbounded dict, except when it says it is full."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from resilience import (
    GCRA,
    FixedWindow,
    LeakyBucket,
    MemoryStore,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from resilience.errors import StoreFull
from resilience.ratelimit.algorithms.base import Algorithm
from resilience.testing import FakeClock

ALGORITHMS = [
    TokenBucket(3, 1.0),
    GCRA(2, 1.0, burst=3),
    LeakyBucket(3, 1.0, mode="shape"),
    FixedWindow(3, 1.0),
    SlidingWindowLog(3, 1.0),
    SlidingWindowCounter(3, 1.0, buckets=2),
]
KEYS = [f"k{i}" for i in range(8)]


class BoundedStoreMachine(RuleBasedStateMachine):
    """Reference model: a plain dict holding every key's state forever."""

    @initialize(algorithm=st.sampled_from(ALGORITHMS), max_keys=st.integers(1, 6))
    def setup(self, algorithm: Algorithm, max_keys: int) -> None:
        self.algorithm = algorithm
        self.clock = FakeClock()
        self.store = MemoryStore(max_keys=max_keys)
        self.table = self.store.table(algorithm, self.clock.monotonic, "t")
        self.model: dict[str, Any] = {}
        self.model_algorithm = type(algorithm)(**algorithm.params())  # independent states

    def live_keys(self) -> int:
        now = self.clock.monotonic()
        return sum(1 for s in self.model.values() if self.model_algorithm.full_at(s) > now)

    @rule(key=st.sampled_from(KEYS), cost=st.integers(1, 4))
    def decide(self, key: str, cost: int) -> None:
        now = self.clock.monotonic()
        state = self.model.get(key)
        if state is not None and self.model_algorithm.full_at(state) <= now:
            state = None  # equivalent to fresh: the property the store relies on
        new_state, expected = self.model_algorithm.decide(state, now, cost)
        is_new = state is None
        try:
            got = self.table.decide(key, cost, now)
        except StoreFull:
            # Allowed only for a key the store does not hold while every held key is live.
            assert is_new
            assert self.live_keys() >= self.store.max_keys
            return
        assert got == expected
        if new_state is None:
            self.model.pop(key, None)
        else:
            self.model[key] = new_state

    @rule(seconds=st.sampled_from([0.0, 0.01, 0.3, 0.5, 1.0, 2.5]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def sweep(self) -> None:
        self.store.sweep()
        assert len(self.store) == self.live_keys()

    @invariant()
    def bounded(self) -> None:
        if hasattr(self, "store"):
            assert len(self.store) <= self.store.max_keys
            assert len(self.store) == len(self.table)

    @invariant()
    def never_forgets_live_state(self) -> None:
        if not hasattr(self, "store"):
            return
        now = self.clock.monotonic()
        for key, state in self.model.items():
            if self.model_algorithm.full_at(state) > now:
                assert self.table.peek(key) is not None, key


BoundedStoreMachine.TestCase.settings = settings(
    max_examples=120, stateful_step_count=40, deadline=None
)
TestBoundedStore = BoundedStoreMachine.TestCase


def test_full_store_refuses_new_key_without_forgiving_live_ones() -> None:
    clock = FakeClock()
    store = MemoryStore(max_keys=2)
    table = store.table(TokenBucket(1, 10.0), clock.monotonic, "t")
    assert table.decide("a", 1, 0.0).allowed
    assert table.decide("b", 1, 0.0).allowed
    try:
        table.decide("c", 1, 0.0)
    except StoreFull as exc:
        assert "max_keys=2" in str(exc)
    else:
        raise AssertionError("expected StoreFull")
    assert not table.decide("a", 1, 0.0).allowed  # still limited, not forgiven
    try:
        table.decide("d", 1, 4.0)  # refused at once: nothing can be reclaimed before t=10
    except StoreFull as exc:
        assert exc.retry_after == 6.0
    else:
        raise AssertionError("expected StoreFull")
    clock.advance(10.0)
    assert table.decide("c", 1, 10.0).allowed  # a and b are full again: reclaimed
    assert len(store) <= 2


def test_idle_keys_are_reclaimed_as_new_keys_arrive() -> None:
    clock = FakeClock()
    store = MemoryStore(max_keys=100_000)
    table = store.table(GCRA(10, 1.0), clock.monotonic, "t")
    for i in range(5000):
        table.decide(f"old{i}", 1, 0.0)
    assert len(store) == 5000
    for i in range(20_000):
        table.decide(f"new{i}", 1, 10.0 + i * 1e-6)
    assert len(store) < 25_000 - 4000  # most old keys reclaimed incrementally
    assert store.sweep() == 0  # the store's clock still reads 0: nothing is full yet
    clock.set(100.0)
    store.sweep()
    assert len(store) == 0
    assert math.isinf(GCRA(1).full_at(None))
