"""``SQLiteIdempotencyStore``: durable records in one SQLite file, shared by one host.

Standard library ``sqlite3`` only.  The file is in WAL mode (readers never
wait for the writer) with a busy timeout, so every process and thread of a
host can share it; each transition is one ``BEGIN IMMEDIATE`` transaction
(read the row, apply :mod:`resilience.idempotency.record`, write, commit),
so two processes can never both take a lease.  Each thread (and each
process after a fork) uses its own connection.

Time: ``clock="wall"`` (the default) reads ``time.time()`` inside the store,
because expiries written to the file must mean the same after a restart and
in every process (monotonic clocks restart at boot).  ``clock="client"``
uses the ``now`` the caller passes, for tests driven by a ``FakeClock``.

The async methods run the same transaction in a worker thread
(``asyncio.to_thread``), so the event loop never waits on the file lock.
Expired rows are deleted in small batches as new keys arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from resilience.errors import StoreUnavailable
from resilience.idempotency import record as machine
from resilience.idempotency.record import Claim, Record

__all__ = ["SQLiteIdempotencyStore"]

T = TypeVar("T")
ClockChoice = Literal["wall", "client"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_records (
    key TEXT PRIMARY KEY,
    done INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    token TEXT NOT NULL,
    expires REAL NOT NULL,
    result BLOB
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_records_expires ON idempotency_records (expires);
"""
_SELECT = "SELECT done, fingerprint, token, expires, result FROM idempotency_records WHERE key = ?"
_UPSERT = (
    "INSERT OR REPLACE INTO idempotency_records (key, done, fingerprint, token, expires, result) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_DELETE = "DELETE FROM idempotency_records WHERE key = ?"
_PURGE = (
    "DELETE FROM idempotency_records WHERE key IN "
    "(SELECT key FROM idempotency_records WHERE expires <= ? LIMIT ?)"
)
_PURGE_EVERY = 64
_PURGE_BATCH = 256


class SQLiteIdempotencyStore:
    """Idempotency records in a SQLite file (WAL): durable, shared by the processes of one host.

    ``path``: the database file (created if missing).  ``clock``: ``"wall"``
    or ``"client"`` (see the module docs).  ``busy_timeout``: seconds a
    transition waits for another process's write lock before it fails with
    :class:`~resilience.errors.StoreUnavailable`.
    """

    local = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: ClockChoice = "wall",
        busy_timeout: float = 5.0,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise ValueError(f"path must be a file path, got {path!r}")
        text = os.fspath(path)
        if text in ("", ":memory:") or text.startswith("file::memory:"):
            raise ValueError(
                "path must name a file (an in-memory SQLite database is private to one "
                "connection; use MemoryIdempotencyStore)"
            )
        if clock not in ("wall", "client"):
            raise ValueError(f"clock must be 'wall' or 'client', got {clock!r}")
        if (
            isinstance(busy_timeout, bool)
            or not isinstance(busy_timeout, int | float)
            or not (0 <= busy_timeout < float("inf"))
        ):
            raise ValueError(f"busy_timeout must be finite seconds >= 0, got {busy_timeout!r}")
        self.path = Path(text)
        self.clock: ClockChoice = clock
        self.busy_timeout = float(busy_timeout)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._begins = 0
        self._generation = 0  # close() bumps it: other threads' connections are then stale
        self._conn()  # create the file and schema now: a bad path fails at construction

    # -- connections ------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid() and local.generation == self._generation:
            return conn
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc
        local.conn = conn
        local.pid = os.getpid()
        local.generation = self._generation
        with self._lock:
            self._connections.append(conn)
        return conn

    def _now(self, now: float) -> float:
        return time.time() if self.clock == "wall" else now

    def _transaction(self, key: str, step: Callable[[sqlite3.Connection, Record | None], T]) -> T:
        """Run ``step(conn, current record)`` inside one ``BEGIN IMMEDIATE`` transaction."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(_SELECT, (key,)).fetchone()
                result = step(conn, None if row is None else _record(row))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    # -- transitions ------------------------------------------------------------------------

    def begin(self, key: str, fingerprint: str, token: str, lease: float, now: float) -> Claim:
        at = self._now(now)

        def step(conn: sqlite3.Connection, current: Record | None) -> Claim:
            claim, new = machine.begin(current, at, fingerprint, token, lease)
            if new is not None:
                conn.execute(_UPSERT, (key, 0, fingerprint, token, new.expires, None))
                self._begins += 1
                if self._begins % _PURGE_EVERY == 0:
                    conn.execute(_PURGE, (at, _PURGE_BATCH))
            return claim

        return self._transaction(key, step)

    def renew(self, key: str, token: str, lease: float, now: float) -> bool:
        at = self._now(now)

        def step(conn: sqlite3.Connection, current: Record | None) -> bool:
            new = machine.renew(current, at, token, lease)
            if new is None:
                return False
            conn.execute(_UPSERT, (key, 0, new.fingerprint, token, new.expires, None))
            return True

        return self._transaction(key, step)

    def complete(self, key: str, token: str, result: bytes, ttl: float, now: float) -> bool:
        at = self._now(now)

        def step(conn: sqlite3.Connection, current: Record | None) -> bool:
            new = machine.complete(current, at, token, result, ttl)
            if new is None:
                return False
            conn.execute(_UPSERT, (key, 1, new.fingerprint, token, new.expires, result))
            return True

        return self._transaction(key, step)

    def release(self, key: str, token: str, now: float) -> bool:
        at = self._now(now)

        def step(conn: sqlite3.Connection, current: Record | None) -> bool:
            if not machine.release(current, at, token):
                return False
            conn.execute(_DELETE, (key,))
            return True

        return self._transaction(key, step)

    def get(self, key: str, now: float) -> Record | None:
        at = self._now(now)
        try:
            row = self._conn().execute(_SELECT, (key,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc
        return machine.live(None if row is None else _record(row), at)

    def purge(self, now: float = 0.0) -> int:
        """Delete every expired record now; returns how many went."""
        at = self._now(now)
        conn = self._conn()
        try:
            return conn.execute(
                "DELETE FROM idempotency_records WHERE expires <= ?", (at,)
            ).rowcount
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    # -- async: the same transactions in a worker thread -------------------------------------

    async def abegin(
        self, key: str, fingerprint: str, token: str, lease: float, now: float
    ) -> Claim:
        return await asyncio.to_thread(self.begin, key, fingerprint, token, lease, now)

    async def arenew(self, key: str, token: str, lease: float, now: float) -> bool:
        return await asyncio.to_thread(self.renew, key, token, lease, now)

    async def acomplete(self, key: str, token: str, result: bytes, ttl: float, now: float) -> bool:
        return await asyncio.to_thread(self.complete, key, token, result, ttl, now)

    async def arelease(self, key: str, token: str, now: float) -> bool:
        return await asyncio.to_thread(self.release, key, token, now)

    async def aget(self, key: str, now: float) -> Record | None:
        return await asyncio.to_thread(self.get, key, now)

    def close(self) -> None:
        """Close every connection this store opened in this process."""
        with self._lock:
            connections, self._connections = self._connections, []
            self._generation += 1
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def __repr__(self) -> str:
        return f"SQLiteIdempotencyStore({str(self.path)!r}, clock={self.clock!r})"


def _record(row: tuple[Any, ...]) -> Record:
    done, fingerprint, token, expires, result = row
    return Record(bool(done), fingerprint, token, float(expires), result)
