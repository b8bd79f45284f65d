"""The blob-store contract, run against every store (memory, file, Redis, S3).

``check_store_contract(make_store)`` drives a store through a claim check and
directly, checking what every store must do the same way: content addressing,
ranged reads, the reference set (release, idempotent release, expiry, sweep).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from resilience import ClaimCheck, PayloadMissing
from resilience.testing import FakeClock

SECRET = b"0123456789abcdef0123456789abcdef"


def _read_all(store: Any, blob_id: str, start: int = 0, end: int | None = None) -> bytes:
    reader = store.reader(blob_id, start, end)
    try:
        parts = []
        while chunk := reader.read_chunk():
            parts.append(chunk)
        return b"".join(parts)
    finally:
        reader.close()


def check_store_contract(make_store: Callable[[], Any], *, start: float = 1_000_000.0) -> None:
    store = make_store()
    clock = FakeClock(start)
    cc = ClaimCheck(store, SECRET, threshold=1000, ttl=100.0, clock=clock, chunk_size=4096)
    data = os.urandom(50_000)

    # round trip, several chunk boundaries, content addressing
    first = cc.check_in(data, metadata={"n": 1})
    second = cc.check_in(iter([data[:7], data[7:]]), metadata={"n": 1})
    t1, t2 = cc.ticket(first), cc.ticket(second)
    assert t1 is not None and t2 is not None
    assert t1.blob_id == t2.blob_id, "the same bytes must be stored once"
    assert t1.ref != t2.ref
    assert cc.redeem(first) == data
    assert cc.open(second).read() == data

    # ranged reads, clamped at the end
    assert _read_all(store, t1.blob_id, 10, 5000) == data[10:5000]
    assert _read_all(store, t1.blob_id, 49_990, 60_000) == data[49_990:]
    assert _read_all(store, t1.blob_id, 4096, 8192) == data[4096:8192]

    # releasing one ticket keeps the payload for the other; releasing twice is harmless
    assert cc.release(first) is False
    assert cc.release(first) is False
    assert cc.redeem(second) == data
    assert cc.release(second) is True
    with pytest.raises(PayloadMissing):
        cc.redeem(second)
    assert cc.release(second) is False

    # expiry: the payload lives as long as its longest-lived ticket
    a = cc.check_in(data)
    clock.advance(50)
    b = cc.check_in(data)
    clock.advance(50)  # a has just expired, b has 50 s left
    assert store.expired(clock.time()) == []
    assert cc.sweep() == 0
    assert cc.redeem(b) == data
    clock.advance(50)
    blob = cc.ticket(a, allow_expired=True)
    assert blob is not None
    assert store.expired(clock.time()) == [blob.blob_id]
    assert cc.sweep() == 1
    with pytest.raises(PayloadMissing):
        store.reader(blob.blob_id)

    # delete removes whatever the references; unknown ids are simply missing
    c = cc.check_in(data)
    tc = cc.ticket(c)
    assert tc is not None
    assert store.delete(tc.blob_id) is True
    assert store.delete(tc.blob_id) is False
    for bad in ("0" * 64, "../../etc/passwd", "a/b", "", "x" * 2000):
        with pytest.raises(PayloadMissing):
            store.reader(bad)
        assert store.release(bad, "r") is False

    # an aborted upload leaves nothing behind
    writer = store.begin()
    writer.write(b"x" * 10_000)
    writer.abort()
    writer.abort()
    assert cc.sweep() == 0
    assert store.expired(clock.time()) == []
