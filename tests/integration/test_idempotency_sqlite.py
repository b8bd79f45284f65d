"""SQLiteIdempotencyStore: real processes on one file, crash recovery, restarts, async."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from resilience import (
    IdempotencyInProgress,
    SQLiteIdempotencyStore,
    StoreUnavailable,
    idempotent,
)
from resilience.events import EventBus
from tests.integration import idempotency_procs as procs
from tests.property.idempotency_machine import IdempotencyStoreMachine

PROCESSES = 4


def test_four_processes_run_the_function_once(tmp_path: Path) -> None:
    check_processes_run_once(("sqlite", str(tmp_path / "idem.db")), tmp_path)


def check_processes_run_once(spec: procs.Spec, tmp_path: Path) -> None:
    effects = str(tmp_path / "effects.log")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results: Any = ctx.Queue()
    processes = [
        ctx.Process(target=procs.charge_once, args=(spec, effects, barrier, results))
        for _ in range(PROCESSES)
    ]
    for p in processes:
        p.start()
    try:
        outcomes = [results.get(timeout=120) for _ in processes]
    finally:
        for p in processes:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join(timeout=10)
    lines = Path(effects).read_text().splitlines()
    ran = sorted(line.split()[0] for line in lines)
    assert ran == sorted(f"k{i}" for i in range(procs.ROUNDS)), lines  # each key ran once
    for i in range(procs.ROUNDS):
        got = [per_process[i] for per_process in outcomes]
        assert all(kind == "ok" for kind, _ in got), got  # wait=60: everyone gets the result
        assert all(value == got[0][1] for _, value in got)
        assert f"k{i} {got[0][1]['by']}" in lines


def test_crashed_process_lease_expires_and_late_completion_is_refused(tmp_path: Path) -> None:
    spec = ("sqlite", str(tmp_path / "idem.db"))
    check_crash_recovery(spec, tmp_path)


def check_crash_recovery(spec: procs.Spec, tmp_path: Path) -> None:
    effects = str(tmp_path / "effects.log")
    lease = 2.0
    ctx = multiprocessing.get_context("spawn")
    inside = ctx.Event()
    owner = ctx.Process(target=procs.hold_lease_forever, args=(spec, effects, lease, inside))
    owner.start()
    store = procs.make_store(spec)
    try:
        assert inside.wait(60)
        record = store.get("charge:" + procs.KEY, _now(store))
        assert record is not None and not record.done
        dead_token = record.token
        runs: list[int] = []

        @idempotent(store, key=lambda amount: procs.KEY, lease=lease, name="charge",
                    events=EventBus())  # fmt: skip
        def charge(amount: int) -> dict[str, Any]:
            runs.append(amount)
            # the dead owner's completion, arriving while this owner runs: refused
            assert not store.complete("charge:" + procs.KEY, dead_token, b'v{"evil":1}', 60.0,
                                      _now(store))  # fmt: skip
            return {"charged": amount}

        time.sleep(lease * 1.25)
        with pytest.raises(IdempotencyInProgress):
            charge(10)  # the owner is alive and renewing: its lease outlived `lease`
        os.kill(owner.pid or 0, signal.SIGKILL)
        owner.join(timeout=10)

        @idempotent(store, key=lambda amount: procs.KEY, lease=lease, name="charge", wait=10.0,
                    events=EventBus())  # fmt: skip
        def retry(amount: int) -> dict[str, Any]:
            return charge.__wrapped__(amount)  # type: ignore[attr-defined, no-any-return]

        assert retry(10) == {"charged": 10}
        assert runs == [10]
        # and after completion, the dead owner still cannot overwrite
        assert not store.complete("charge:" + procs.KEY, dead_token, b'v{"evil":1}', 60.0,
                                  _now(store))  # fmt: skip
        assert retry(10) == {"charged": 10} and runs == [10]
        assert len(Path(effects).read_text().splitlines()) == 1  # the dead owner's start
    finally:
        if owner.is_alive():
            owner.kill()
            owner.join(timeout=10)
        store.close()


def _now(store: Any) -> float:
    return time.monotonic() if getattr(store, "clock", "") == "client" else 0.0


def test_records_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "idem.db"
    calls = []

    def make() -> Any:
        store = SQLiteIdempotencyStore(path)

        @idempotent(store, key=lambda n: "k", name="job", events=EventBus())
        def job(n: int) -> list[int]:
            calls.append(n)
            return [n]

        return store, job

    store, job = make()
    assert job(1) == [1]
    store.close()
    store, job = make()  # a new process would see the same
    assert job(1) == [1] and calls == [1]
    store.close()


def test_async_never_blocks_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "idem.db"
    store = SQLiteIdempotencyStore(path, busy_timeout=10.0)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process's write lock, held

    async def main() -> int:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, blocker.execute, "COMMIT")
        claim = await store.abegin("k", "f", "t1", 5.0, 0.0)
        done.set()
        await task
        assert claim.status == "acquired"
        return ticks

    try:
        assert asyncio.run(main()) >= 5  # the loop kept running while the lock was held
    finally:
        blocker.close()
        store.close()


def test_busy_file_is_a_store_error_not_a_hang(tmp_path: Path) -> None:
    path = tmp_path / "idem.db"
    store = SQLiteIdempotencyStore(path, busy_timeout=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable):
            store.begin("k", "f", "t", 5.0, 0.0)
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    assert store.begin("k", "f", "t", 5.0, 0.0).status == "acquired"
    store.close()


def test_threads_share_one_file(tmp_path: Path) -> None:
    store = SQLiteIdempotencyStore(tmp_path / "idem.db")
    barrier = threading.Barrier(16)
    calls = []
    results: list[Any] = []

    @idempotent(store, key=lambda: "k", wait=30.0, events=EventBus())
    def work() -> int:
        calls.append(1)
        return 7

    def run() -> None:
        barrier.wait(10)
        results.append(work())

    threads = [threading.Thread(target=run) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    store.close()
    assert calls == [1] and results == [7] * 16


def test_options_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="path"):
        SQLiteIdempotencyStore(":memory:")
    with pytest.raises(ValueError, match="clock"):
        SQLiteIdempotencyStore(tmp_path / "x.db", clock="server")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="busy_timeout"):
        SQLiteIdempotencyStore(tmp_path / "x.db", busy_timeout=-1)
    with pytest.raises(StoreUnavailable):
        SQLiteIdempotencyStore(tmp_path / "missing-dir" / "x.db")


class SQLiteMachine(IdempotencyStoreMachine):
    counter = 0

    def make_store(self) -> Any:
        SQLiteMachine.counter += 1
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"idem-machine-{os.getpid()}.db"
        if SQLiteMachine.counter == 1 and path.exists():
            path.unlink()
        store = SQLiteIdempotencyStore(path, clock="client")
        store._conn().execute("DELETE FROM idempotency_records")
        return store


TestSQLiteStore = SQLiteMachine.TestCase
TestSQLiteStore.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_each_transition_is_one_transaction(tmp_path: Path) -> None:
    """Two begins queued behind another process's write lock: exactly one takes the lease.

    Were the read and the write separate statements, both would read "absent"
    while the lock is held (WAL lets readers through) and both would write.
    """
    path = tmp_path / "idem.db"
    stores = [SQLiteIdempotencyStore(path, busy_timeout=10.0) for _ in range(2)]
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    claims: list[str] = []
    started = threading.Barrier(3)

    def take(store: SQLiteIdempotencyStore, token: str) -> None:
        started.wait(10)
        claims.append(store.begin("k", "f", token, 5.0, 0.0).status)

    threads = [threading.Thread(target=take, args=(s, f"t{i}")) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    started.wait(10)
    time.sleep(0.2)  # both are now waiting on the lock
    blocker.execute("COMMIT")
    for t in threads:
        t.join(30)
    blocker.close()
    for store in stores:
        store.close()
    assert sorted(claims) == ["acquired", "in_progress"]


def test_expired_rows_are_deleted_as_new_keys_arrive(tmp_path: Path) -> None:
    store = SQLiteIdempotencyStore(tmp_path / "idem.db", clock="client")

    def rows() -> int:
        return int(store._conn().execute("SELECT COUNT(*) FROM idempotency_records").fetchone()[0])

    for i in range(100):
        assert store.begin(f"old{i}", "f", "t", 1.0, 0.0).status == "acquired"
        assert store.complete(f"old{i}", "t", b"v", 5.0, 0.0)
    assert rows() == 100
    for i in range(64):  # one purge batch runs every 64 new keys
        store.begin(f"new{i}", "f", "t", 1.0, 10.0)
    assert rows() == 64  # the 100 expired records are gone
    assert store.purge(20.0) == 64 and rows() == 0
    store.close()
