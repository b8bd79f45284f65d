"""The interface a claim check needs from a blob store.

A payload is written through a :class:`BlobWriter` from :meth:`BlobStore.begin`
while the claim check hashes it; :meth:`BlobStore.commit` then files it under
its SHA-256 digest.  If the store already holds those bytes, the upload is
discarded and the existing payload is reused: content addressing, so the
same bytes checked in twice are stored once.

Lifetime is a *reference set with leases*: every ticket holds one reference
(a random id) with its own expiry (``None``: no expiry).  ``release`` drops
one reference and deletes the payload when none is left; ``sweep`` drops
expired references the same way.  Dropping a reference is idempotent, so a
consumer that releases the same ticket twice (a redelivered message) never
takes away another ticket's claim, which a bare counter would.

Every method is synchronous; a store whose I/O is asynchronous also
provides ``a``-prefixed twins (``acommit``, ``areader``, ``awrite``,
``aread_chunk``, ...), which the async driver prefers.  Times are wall-clock
seconds from the claim check's clock, passed in as ``now``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

from resilience.policy import Io

__all__ = [
    "DIGEST_ID",
    "BlobReader",
    "BlobStore",
    "BlobWriter",
    "check_commit",
    "io_step",
    "live",
]

DIGEST_ID: Final = re.compile(r"[0-9a-f]{64}")
"""A content address: lowercase hex SHA-256 (the only id the local stores accept)."""


@runtime_checkable
class BlobWriter(Protocol):
    """One upload in progress."""

    def write(self, chunk: bytes) -> None: ...

    def abort(self) -> None:
        """Forget the upload (best effort, never raises; leftovers are swept)."""
        ...


W = TypeVar("W")


def check_commit(writer: BlobWriter, own: type[W], store: object, digest: str, size: int) -> W:
    """What every store's ``commit`` checks before filing an upload; the writer as ``own``.

    The writer must be this store's own and still open, the digest a content
    address, and the size the number of bytes actually written.
    """
    if not isinstance(writer, own) or getattr(writer, "_store", None) is not store:
        raise TypeError("commit() needs a writer from this store's begin()")
    if getattr(writer, "done", False):
        raise ValueError("commit() after commit or abort")
    if not DIGEST_ID.fullmatch(digest):
        raise ValueError(f"digest must be lowercase hex SHA-256, got {digest!r}")
    written = getattr(writer, "size", None)
    if written != size:
        raise ValueError(f"size {size} does not match the {written} bytes written")
    return writer


@runtime_checkable
class BlobReader(Protocol):
    """A streamed read of one payload or a byte range of it."""

    def read_chunk(self) -> bytes:
        """The next chunk, ``b""`` at the end."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class BlobStore(Protocol):
    """Where payloads live; see the module docstring for the lifetime rules."""

    def begin(self) -> BlobWriter: ...

    def commit(
        self,
        writer: BlobWriter,
        digest: str,
        size: int,
        ref: str,
        expires_at: float | None,
        now: float,
    ) -> str:
        """File the upload under ``digest`` holding reference ``ref``; return the payload id."""
        ...

    def reader(self, blob_id: str, start: int = 0, end: int | None = None) -> BlobReader:
        """Stream bytes ``[start, end)``; raise ``PayloadMissing`` if absent."""
        ...

    def release(self, blob_id: str, ref: str) -> bool:
        """Drop one reference; True if that deleted the payload."""
        ...

    def delete(self, blob_id: str) -> bool:
        """Delete the payload whatever its references; True if it existed."""
        ...

    def expired(self, now: float) -> list[str]:
        """Ids of payloads whose every reference has expired by ``now``."""
        ...

    def sweep(self, now: float) -> int:
        """Drop expired references and abandoned uploads; the number of items deleted."""
        ...


def live(expires_at: float | None, now: float) -> bool:
    """A reference expiring at ``expires_at`` still holds at ``now`` (expiry is exclusive)."""
    return expires_at is None or now < expires_at


def io_step(obj: object, name: str, *args: Any) -> Io:
    """An :class:`Io` step for ``obj.name(*args)``, with ``obj.aname`` as the async form."""
    sync: Callable[..., Any] = getattr(obj, name)
    async_: Callable[..., Awaitable[Any]] | None = getattr(obj, "a" + name, None)
    return Io(sync, async_, *args)
