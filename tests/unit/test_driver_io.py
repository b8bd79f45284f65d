"""The Io step: one generator runs store operations under both drivers."""

from __future__ import annotations

from typing import Any

import pytest

from resilience.policy import CALL, Io, Steps, drive_async, drive_sync
from resilience.testing import FakeClock


class Store:
    """A store with a sync and an async form of one operation, recording which ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def get(self, key: str) -> str:
        self.ran.append("sync")
        if key == "bad":
            raise KeyError(key)
        return key.upper()

    async def aget(self, key: str) -> str:
        self.ran.append("async")
        if key == "bad":
            raise KeyError(key)
        return key.upper()


def lookup_then_call(store: Store, key: str) -> Steps[Any]:
    try:
        found = yield Io(store.get, store.aget, key)
    except KeyError:
        found = "missing"
    result = yield CALL
    return (found, result)


def test_sync_driver_runs_the_sync_operation() -> None:
    store = Store()
    assert drive_sync(lookup_then_call(store, "a"), FakeClock(), lambda: 1) == ("A", 1)
    assert drive_sync(lookup_then_call(store, "bad"), FakeClock(), lambda: 2) == ("missing", 2)
    assert store.ran == ["sync", "sync"]


async def test_async_driver_awaits_the_async_operation() -> None:
    store = Store()

    async def fn() -> int:
        return 3

    assert await drive_async(lookup_then_call(store, "a"), FakeClock(), fn) == ("A", 3)
    assert await drive_async(lookup_then_call(store, "bad"), FakeClock(), fn) == ("missing", 3)
    assert store.ran == ["async", "async"]


async def test_async_driver_calls_sync_operation_without_an_async_form() -> None:
    store = Store()

    def steps() -> Steps[str]:
        return (yield Io(store.get, None, "x"))

    assert await drive_async(steps(), FakeClock()) == "X"
    assert store.ran == ["sync"]
    assert repr(Io(store.get)) == "Io(Store.get)"


def test_an_unhandled_store_error_propagates() -> None:
    store = Store()

    def steps() -> Steps[str]:
        return (yield Io(store.get, store.aget, "bad"))

    with pytest.raises(KeyError):
        drive_sync(steps(), FakeClock())
