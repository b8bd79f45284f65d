"""Worker processes for the cross-process idempotency tests (SQLite and Redis; no tests here).

A store is described by a picklable spec, ``("sqlite", path)`` or
``("redis", url)``, so spawned processes build their own.  The protected
function's side effect is one line appended to a file (``O_APPEND``): the
test counts lines to see how many times it really ran.
"""

from __future__ import annotations

import os
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from typing import Any

from resilience import IdempotencyInProgress, SQLiteIdempotencyStore, idempotent
from resilience.events import EventBus

Spec = tuple[str, str]
KEY = "charge-1"


def make_store(spec: Spec) -> Any:
    kind, where = spec
    if kind == "sqlite":
        return SQLiteIdempotencyStore(where)
    from resilience.redis import RedisIdempotencyStore

    return RedisIdempotencyStore.from_url(where, timeout=5.0)


def effect(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode() + b"\n")
    finally:
        os.close(fd)


ROUNDS = 40


def charge_once(spec: Spec, effects: str, barrier: Barrier, results: Queue[Any]) -> None:
    """Race the other processes on ``ROUNDS`` keys, one after another; report what came back."""
    store = make_store(spec)

    @idempotent(store, key=lambda key: key, wait=60.0, events=EventBus(), name="charge")
    def charge(key: str) -> dict[str, Any]:
        effect(effects, f"{key} {os.getpid()}")
        time.sleep(0.3 if key == "k0" else 0.002)
        return {"key": key, "by": os.getpid()}

    out: list[Any] = []
    try:
        for i in range(ROUNDS):
            barrier.wait(timeout=60)
            try:
                out.append(("ok", charge(f"k{i}")))
            except IdempotencyInProgress as exc:
                out.append(("in_progress", exc.retry_after))
    finally:
        store.close()
        results.put(out)


def hold_lease_forever(spec: Spec, effects: str, lease: float, inside: Event) -> None:
    """Take the lease and hang (renewing) until SIGKILLed."""
    store = make_store(spec)

    @idempotent(store, key=lambda amount: KEY, lease=lease, events=EventBus(), name="charge")
    def charge(amount: int) -> dict[str, Any]:
        effect(effects, f"started {amount} in {os.getpid()}")
        inside.set()
        time.sleep(600)
        return {"charged": amount}

    charge(10)
