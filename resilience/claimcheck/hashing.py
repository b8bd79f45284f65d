"""SHA-256 of a stream, computed beside the I/O instead of between it.

``hashlib`` releases the GIL while it hashes a buffer, so a helper thread can
hash chunk *n* while the caller reads or writes chunk *n + 1*: on a
multi-core machine a large check-in or redeem then costs about the larger of
the hashing and the I/O, not their sum.  Small payloads (under ``inline``
bytes) are hashed in the caller's thread and never start a thread.  At most
``depth`` chunks wait in the queue, which bounds the memory held for hashing.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import Final

__all__ = ["StreamHasher"]

_STOP: Final = b""


class StreamHasher:
    """``update(chunk)`` in order, then ``hexdigest()`` once; ``close()`` on abandon."""

    __slots__ = ("_error", "_hash", "_inline", "_queue", "_thread", "_total")

    def __init__(self, *, inline: int = 4 * 1024 * 1024, depth: int = 2) -> None:
        self._hash = hashlib.sha256()
        self._inline = inline
        self._total = 0
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=depth)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _work(self) -> None:
        try:
            while True:
                chunk = self._queue.get()
                if chunk is _STOP:
                    return
                self._hash.update(chunk)
        except BaseException as exc:  # pragma: no cover - hashlib does not fail on bytes
            self._error = exc

    def update(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._total += len(chunk)
        if self._thread is None:
            if self._total <= self._inline:
                self._hash.update(chunk)
                return
            self._thread = threading.Thread(
                target=self._work, name="claimcheck-sha256", daemon=True
            )
            self._thread.start()
        self._queue.put(chunk)

    def hexdigest(self) -> str:
        self.close()
        if self._error is not None:
            raise self._error
        return self._hash.hexdigest()

    def close(self) -> None:
        thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()
            self._thread = None
