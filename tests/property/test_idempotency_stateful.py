"""The memory idempotency store against the model (unbounded and bounded)."""

from __future__ import annotations

from typing import Any

from hypothesis import settings

from resilience import MemoryIdempotencyStore
from tests.property.idempotency_machine import IdempotencyStoreMachine


class MemoryMachine(IdempotencyStoreMachine):
    def make_store(self) -> Any:
        return MemoryIdempotencyStore()


class BoundedMemoryMachine(IdempotencyStoreMachine):
    bounded = True
    max_keys = 2

    def make_store(self) -> Any:
        return MemoryIdempotencyStore(max_keys=2)


TestMemoryStore = MemoryMachine.TestCase
TestMemoryStore.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestBoundedMemoryStore = BoundedMemoryMachine.TestCase
TestBoundedMemoryStore.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
