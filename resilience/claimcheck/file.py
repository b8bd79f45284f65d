"""Payloads as files in one directory: the embedded default store.

Layout under ``directory``: ``blobs/<sha256>`` (the bytes), ``refs/<sha256>``
(the reference set, JSON) and ``tmp/<random>.part`` (uploads in progress).

* Atomic: an upload is written to ``tmp/``, fsynced, then renamed into
  ``blobs/`` and the directory fsynced; a reader sees the whole payload or
  nothing.
* Crash-safe: each writer holds an ``flock`` on its temporary file, so
  ``sweep`` deletes exactly the temporary files whose writer is gone (the
  kernel drops the lock when a process dies, even by ``SIGKILL``).
* No path traversal: the only names ever joined to the directory are
  lowercase hex SHA-256 digests and names this store generated; any other id
  is simply not found.
* Several processes may share a directory: reference updates and commits
  take an ``flock`` on ``.lock`` (and a thread lock within the process).

The ``a``-prefixed twins run the same file operations in a worker thread
(``asyncio.to_thread``), so ``acheck_in`` never blocks the event loop on a
write or an fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import secrets
import threading
from collections.abc import Iterator
from typing import Any

from resilience.claimcheck.errors import PayloadMissing
from resilience.claimcheck.store import DIGEST_ID, BlobWriter, check_commit, live

__all__ = ["FileBlobStore"]

_TMP_SUFFIX = ".part"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_locked(directory: str) -> tuple[str, int]:
    """A new temporary file holding its ``flock`` (held while we live: sweep skips us).

    A sweep can open and delete the file between its creation and our lock;
    then the path no longer names our file, so start again with a new one.
    """
    for _ in range(16):
        path = os.path.join(directory, secrets.token_hex(16) + _TMP_SUFFIX)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            try:
                named = os.stat(path)
            except FileNotFoundError:
                named = None
            if named is not None and (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino):
                return path, fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise OSError(errno.EAGAIN, f"temporary files in {directory!r} kept being swept away")


class _FileWriter:
    __slots__ = ("_fd", "_store", "done", "path", "size")

    def __init__(self, store: FileBlobStore) -> None:
        self._store = store
        self.done = True  # until the file exists, there is nothing to abort
        self.path, self._fd = _create_locked(store._tmp)
        self.size = 0
        self.done = False

    def write(self, chunk: bytes) -> None:
        if self.done:
            raise ValueError("write() after commit or abort")
        view = memoryview(chunk)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.size += len(chunk)

    async def awrite(self, chunk: bytes) -> None:
        await asyncio.to_thread(self.write, chunk)

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def __del__(self) -> None:
        self.abort()


class _FileReader:
    __slots__ = ("_chunk", "_f", "_left")

    def __init__(self, path: str, start: int, end: int | None, chunk: int) -> None:
        self._f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        size = os.fstat(self._f.fileno()).st_size
        start = max(0, min(start, size))
        stop = size if end is None else max(start, min(end, size))
        self._f.seek(start)
        self._left = stop - start
        self._chunk = chunk

    def read_chunk(self) -> bytes:
        if self._left <= 0:
            return b""
        data = self._f.read(min(self._chunk, self._left))
        if not data:  # the file shrank under us: let the digest check say so
            self._left = 0
            return b""
        self._left -= len(data)
        return data

    async def aread_chunk(self) -> bytes:
        return await asyncio.to_thread(self.read_chunk)

    def close(self) -> None:
        self._f.close()


class FileBlobStore:
    """Payloads under ``directory`` (created if missing).

    ``fsync=False`` trades durability on power loss for speed; atomicity stays.
    """

    __slots__ = (
        "_blobs",
        "_lock",
        "_lockfile",
        "_refs",
        "_tmp",
        "chunk_size",
        "directory",
        "fsync",
    )

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        chunk_size: int = 1024 * 1024,
        fsync: bool = True,
    ) -> None:
        if type(chunk_size) is not int or chunk_size <= 0:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        self.directory = os.fspath(directory)
        self.chunk_size = chunk_size
        self.fsync = fsync
        self._blobs = os.path.join(self.directory, "blobs")
        self._refs = os.path.join(self.directory, "refs")
        self._tmp = os.path.join(self.directory, "tmp")
        for path in (self.directory, self._blobs, self._refs, self._tmp):
            os.makedirs(path, exist_ok=True)
        self._lockfile = os.path.join(self.directory, ".lock")
        self._lock = threading.Lock()

    # -- locking and reference files ------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            fd = os.open(self._lockfile, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing drops the flock

    def _read_refs(self, digest: str) -> dict[str, float | None] | None:
        try:
            with open(os.path.join(self._refs, digest), "rb") as f:
                data: Any = json.loads(f.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable: treat as unreferenced, sweep reclaims it
        if not isinstance(data, dict):
            return {}
        refs: dict[str, float | None] = {}
        for key, value in data.items():
            if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
                refs[str(key)] = None if value is None else float(value)
        return refs

    def _write_refs(self, digest: str, refs: dict[str, float | None]) -> None:
        path = os.path.join(self._refs, digest)
        tmp = path + "." + secrets.token_hex(8) + _TMP_SUFFIX
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(refs, separators=(",", ":")).encode("ascii"))
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if self.fsync:
            _fsync_dir(self._refs)

    def _remove(self, digest: str) -> bool:
        existed = False
        for path in (os.path.join(self._blobs, digest), os.path.join(self._refs, digest)):
            try:
                os.unlink(path)
                existed = True
            except FileNotFoundError:
                pass
        return existed

    # -- the protocol -----------------------------------------------------------------------

    def begin(self) -> _FileWriter:
        return _FileWriter(self)

    def commit(
        self,
        writer: BlobWriter,
        digest: str,
        size: int,
        ref: str,
        expires_at: float | None,
        now: float,
    ) -> str:
        writer = check_commit(writer, _FileWriter, self, digest, size)
        try:
            if self.fsync:
                os.fsync(writer._fd)
            target = os.path.join(self._blobs, digest)
            with self._locked():
                refs = self._read_refs(digest)
                if refs is not None and os.path.exists(target):
                    os.unlink(writer.path)  # the same bytes are stored already
                else:
                    os.rename(writer.path, target)
                    if self.fsync:
                        _fsync_dir(self._blobs)
                    refs = {}
                refs[ref] = expires_at
                self._write_refs(digest, refs)
        except BaseException:
            writer.abort()
            raise
        writer.done = True
        with contextlib.suppress(OSError):
            os.close(writer._fd)
        return digest

    async def acommit(
        self,
        writer: BlobWriter,
        digest: str,
        size: int,
        ref: str,
        expires_at: float | None,
        now: float,
    ) -> str:
        return await asyncio.to_thread(self.commit, writer, digest, size, ref, expires_at, now)

    def reader(self, blob_id: str, start: int = 0, end: int | None = None) -> _FileReader:
        if not (isinstance(blob_id, str) and DIGEST_ID.fullmatch(blob_id)):
            raise PayloadMissing(f"no payload {blob_id!r}")
        try:
            return _FileReader(os.path.join(self._blobs, blob_id), start, end, self.chunk_size)
        except FileNotFoundError:
            raise PayloadMissing(f"no payload {blob_id!r}") from None

    async def areader(self, blob_id: str, start: int = 0, end: int | None = None) -> _FileReader:
        return await asyncio.to_thread(self.reader, blob_id, start, end)

    async def arelease(self, blob_id: str, ref: str) -> bool:
        return await asyncio.to_thread(self.release, blob_id, ref)

    async def asweep(self, now: float) -> int:
        return await asyncio.to_thread(self.sweep, now)

    def release(self, blob_id: str, ref: str) -> bool:
        if not (isinstance(blob_id, str) and DIGEST_ID.fullmatch(blob_id)):
            return False
        with self._locked():
            refs = self._read_refs(blob_id)
            if refs is None:
                return False
            refs.pop(ref, None)
            if refs:
                self._write_refs(blob_id, refs)
                return False
            return self._remove(blob_id)

    def delete(self, blob_id: str) -> bool:
        if not (isinstance(blob_id, str) and DIGEST_ID.fullmatch(blob_id)):
            return False
        with self._locked():
            return self._remove(blob_id)

    def _digests(self) -> set[str]:
        names = set(os.listdir(self._blobs)) | set(os.listdir(self._refs))
        return {n for n in names if DIGEST_ID.fullmatch(n)}

    def expired(self, now: float) -> list[str]:
        with self._locked():
            out = []
            for digest in sorted(self._digests()):
                refs = self._read_refs(digest)
                if not refs or not any(live(e, now) for e in refs.values()):
                    out.append(digest)
            return out

    def sweep(self, now: float) -> int:
        """Delete expired or orphaned payloads and the temporary files of dead writers."""
        removed = self._sweep_tmp()
        with self._locked():
            for digest in self._digests():
                refs = self._read_refs(digest)
                alive = {r: e for r, e in (refs or {}).items() if live(e, now)}
                blob_exists = os.path.exists(os.path.join(self._blobs, digest))
                if not alive or not blob_exists:
                    if self._remove(digest) and blob_exists:
                        removed += 1
                elif refs is not None and len(alive) != len(refs):
                    self._write_refs(digest, alive)
        return removed

    def _sweep_tmp(self) -> int:
        removed = 0
        for directory in (self._tmp, self._refs):
            for name in os.listdir(directory):
                if not name.endswith(_TMP_SUFFIX):
                    continue
                path = os.path.join(directory, name)
                if directory == self._refs:  # half-written reference files: only under the lock
                    continue
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                        continue  # a live writer holds it
                    raise
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                        removed += 1
                finally:
                    os.close(fd)
        with self._locked():  # leftover reference temp files: nobody writes them outside the lock
            for name in os.listdir(self._refs):
                if name.endswith(_TMP_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(self._refs, name))
        return removed

    def __repr__(self) -> str:
        return f"FileBlobStore({self.directory!r})"
