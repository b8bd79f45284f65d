"""A bounded in-process blob store, for tests and single-process use."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from resilience.claimcheck.errors import PayloadMissing
from resilience.claimcheck.store import BlobWriter, check_commit, live
from resilience.errors import StoreFull

__all__ = ["MemoryBlobStore"]


@dataclass(slots=True)
class _Blob:
    chunks: list[bytes]
    size: int
    refs: dict[str, float | None] = field(default_factory=dict)


class _MemoryWriter:
    __slots__ = ("_store", "chunks", "done", "size")

    def __init__(self, store: MemoryBlobStore) -> None:
        self._store = store
        self.chunks: list[bytes] = []
        self.size = 0
        self.done = False

    def write(self, chunk: bytes) -> None:
        if self.done:
            raise ValueError("write() after commit or abort")
        self._store._reserve(len(chunk))
        self.chunks.append(bytes(chunk))
        self.size += len(chunk)

    def abort(self) -> None:
        if not self.done:
            self.done = True
            self._store._unreserve(self.size)
            self.chunks = []


class _MemoryReader:
    __slots__ = ("_chunks", "_end", "_i", "_pos", "_skip")

    def __init__(self, chunks: list[bytes], start: int, end: int) -> None:
        self._chunks = chunks
        self._pos = start
        self._end = end
        self._i = 0
        self._skip = start  # bytes still to skip from the chunk list's start

    def read_chunk(self) -> bytes:
        while self._i < len(self._chunks) and self._pos < self._end:
            chunk = self._chunks[self._i]
            self._i += 1
            if self._skip >= len(chunk):
                self._skip -= len(chunk)
                continue
            part = chunk[self._skip : self._skip + (self._end - self._pos)]
            self._skip = 0
            self._pos += len(part)
            return part
        return b""

    def close(self) -> None:
        self._chunks = []


class MemoryBlobStore:
    """Payloads in a dict, at most ``max_bytes`` in total (uploads in progress included)."""

    __slots__ = ("_blobs", "_lock", "_used", "max_bytes")

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        if type(max_bytes) is not int or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._blobs: dict[str, _Blob] = {}
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used_bytes(self) -> int:
        return self._used

    def _reserve(self, n: int) -> None:
        with self._lock:
            if self._used + n > self.max_bytes:
                raise StoreFull(f"MemoryBlobStore is full ({self._used} of {self.max_bytes} bytes)")
            self._used += n

    def _unreserve(self, n: int) -> None:
        with self._lock:
            self._used -= n

    def begin(self) -> _MemoryWriter:
        return _MemoryWriter(self)

    def commit(
        self,
        writer: BlobWriter,
        digest: str,
        size: int,
        ref: str,
        expires_at: float | None,
        now: float,
    ) -> str:
        writer = check_commit(writer, _MemoryWriter, self, digest, size)
        with self._lock:
            writer.done = True
            blob = self._blobs.get(digest)
            if blob is None:
                self._blobs[digest] = _Blob(writer.chunks, size, {ref: expires_at})
            else:  # the same bytes again: keep one copy, add a reference
                self._used -= writer.size
                blob.refs[ref] = expires_at
            writer.chunks = []
        return digest

    def reader(self, blob_id: str, start: int = 0, end: int | None = None) -> _MemoryReader:
        with self._lock:
            blob = self._blobs.get(blob_id)
            if blob is None:
                raise PayloadMissing(f"no payload {blob_id!r}")
            stop = blob.size if end is None else min(end, blob.size)
            return _MemoryReader(blob.chunks, max(0, start), stop)

    def _drop(self, blob_id: str) -> None:
        blob = self._blobs.pop(blob_id)
        self._used -= blob.size

    def release(self, blob_id: str, ref: str) -> bool:
        with self._lock:
            blob = self._blobs.get(blob_id)
            if blob is None:
                return False
            blob.refs.pop(ref, None)
            if blob.refs:
                return False
            self._drop(blob_id)
            return True

    def delete(self, blob_id: str) -> bool:
        with self._lock:
            if blob_id not in self._blobs:
                return False
            self._drop(blob_id)
            return True

    def expired(self, now: float) -> list[str]:
        with self._lock:
            return [
                blob_id
                for blob_id, blob in self._blobs.items()
                if not any(live(exp, now) for exp in blob.refs.values())
            ]

    def sweep(self, now: float) -> int:
        with self._lock:
            dead = [
                blob_id
                for blob_id, blob in self._blobs.items()
                if not any(live(exp, now) for exp in blob.refs.values())
            ]
            for blob_id in dead:
                self._drop(blob_id)
            for blob in self._blobs.values():
                blob.refs = {r: e for r, e in blob.refs.items() if live(e, now)}
            return len(dead)

    def __len__(self) -> int:
        return len(self._blobs)

    def __repr__(self) -> str:
        return f"MemoryBlobStore(max_bytes={self.max_bytes}, payloads={len(self._blobs)})"
