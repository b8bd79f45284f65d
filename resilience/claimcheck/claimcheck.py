"""``ClaimCheck``: big payloads go to a store, a small signed ticket travels instead.

Check-in and redeem are written once, as step generators (see
:mod:`resilience.policy`): every store operation is an :class:`Io` step, so
``check_in`` runs them synchronously and ``acheck_in`` awaits the store's
async twins where it has them.  Payloads are streamed in ``chunk_size``
pieces and hashed as they are written; only the first ``threshold`` bytes
are ever buffered (to decide between inline and stored).

Times: a ticket's expiry is an absolute wall-clock time, because it leaves
the process (another host redeems it).  It comes from the injected clock's
``time()`` method (``resilience.testing.FakeClock`` has one); the default is
``time.time``.
"""

from __future__ import annotations

import hmac
import io
import json
import secrets
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from resilience import _validate
from resilience.claimcheck.envelope import Envelope
from resilience.claimcheck.errors import (
    PayloadCorrupt,
    PayloadMissing,
    TicketExpired,
    TicketInvalid,
)
from resilience.claimcheck.events import ClaimCheckedIn, ClaimRedeemed, TicketRejected
from resilience.claimcheck.hashing import StreamHasher
from resilience.claimcheck.store import BlobReader, BlobStore, BlobWriter, io_step
from resilience.claimcheck.tickets import Keyring, Ticket
from resilience.clock import SYSTEM_CLOCK, Clock, SystemClock
from resilience.events import EventBus, default_bus
from resilience.policy import Steps, drive_async, drive_sync

__all__ = ["ClaimCheck", "ClaimReader", "Source", "ValetGrant"]

Source = bytes | bytearray | memoryview | io.RawIOBase | io.BufferedIOBase | Iterable[bytes]
"""What ``check_in`` accepts: bytes, a binary file object, or an iterable of bytes."""

CLAIM: Final = b"claim"
VALET: Final = b"valet"


def _wall_function(clock: Clock | None) -> Callable[[], float]:
    if clock is None or isinstance(clock, SystemClock):
        return time.time
    wall = getattr(clock, "time", None)
    if not callable(wall):
        raise ValueError(
            "clock must have a time() method (wall-clock seconds): a ticket's expiry is an "
            f"absolute time that leaves the process; got {clock!r}"
        )
    return wall  # type: ignore[no-any-return]


def _chunks(source: object, size: int) -> Iterator[bytes]:
    """The payload in pieces of at most ``size`` bytes, never all of it at once."""
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source).cast("B")
        for start in range(0, len(view), size):
            yield bytes(view[start : start + size])
        return
    if isinstance(source, str):
        raise TypeError("check_in needs bytes, not str: encode the text first")
    read = getattr(source, "read", None)
    if callable(read):
        while True:
            data = read(size)
            if data is None:
                raise TypeError("a non-blocking file object returned None; pass a blocking one")
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"file object read() returned {type(data).__name__}, not bytes")
            if not data:
                return
            yield bytes(data)
    if not isinstance(source, Iterable):
        raise TypeError(f"cannot check in {type(source).__name__}: pass bytes, a file or chunks")
    for piece in source:
        if not isinstance(piece, bytes | bytearray | memoryview):
            raise TypeError(f"an iterable payload must yield bytes, got {type(piece).__name__}")
        view = memoryview(piece).cast("B")
        if len(view) <= size:
            yield bytes(view)
        else:
            for start in range(0, len(view), size):
                yield bytes(view[start : start + size])


def _check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    data = dict(metadata)
    try:
        text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be JSON-serialisable: {exc}") from None
    if len(text) > 16 * 1024:
        raise ValueError("metadata must serialise to at most 16 KiB of JSON")
    return json.loads(text)  # type: ignore[no-any-return]  # a plain copy, as a reader will see it


@dataclass(frozen=True, slots=True)
class ValetGrant:
    """What a verified valet token allows: reading one payload until ``expires_at``."""

    blob_id: str
    size: int
    digest: str
    expires_at: float


class _Verifier:
    """Counts and hashes a payload as it streams; checks it against the ticket at the end."""

    __slots__ = ("_hash", "digest", "seen", "size")

    def __init__(self, size: int, digest: str) -> None:
        self.size = size
        self.digest = digest
        self.seen = 0
        self._hash = StreamHasher()

    def update(self, chunk: bytes) -> None:
        self.seen += len(chunk)
        if self.seen > self.size:
            self._hash.close()
            raise PayloadCorrupt(f"payload is longer than the {self.size} bytes signed")
        self._hash.update(chunk)

    def close(self) -> None:
        self._hash.close()

    def finish(self) -> None:
        if self.seen != self.size:
            self._hash.close()
            raise PayloadCorrupt(f"payload has {self.seen} bytes, the ticket signed {self.size}")
        if not hmac.compare_digest(self._hash.hexdigest(), self.digest):
            raise PayloadCorrupt("payload bytes do not match the signed SHA-256 digest")


class ClaimReader(io.RawIOBase):
    """A streamed, verified read of one payload: ``PayloadCorrupt`` at the end if it differs."""

    def __init__(
        self, reader: BlobReader, verifier: _Verifier, on_done: Callable[[], None]
    ) -> None:
        super().__init__()
        self._reader = reader
        self._verifier = verifier
        self._pending = memoryview(b"")
        self._eof = False
        self._on_done = on_done

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        out = memoryview(buffer).cast("B")
        while not self._pending and not self._eof:
            chunk = self._reader.read_chunk()
            if chunk:
                self._verifier.update(chunk)
                self._pending = memoryview(chunk)
            else:
                self._eof = True
                self._verifier.finish()
                self._on_done()
        n = min(len(out), len(self._pending))
        out[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
            self._verifier.close()
        super().close()


class ClaimCheck:
    """Claim check and valet key over one blob store; see ``docs/claim-check.md``."""

    __slots__ = (
        "_events",
        "_keys",
        "_wall",
        "chunk_size",
        "clock",
        "name",
        "store",
        "threshold",
        "ttl",
    )

    def __init__(
        self,
        store: BlobStore,
        secret: bytes | Mapping[str, bytes],
        *,
        threshold: int = 256 * 1024,
        ttl: float | None = None,
        clock: Clock | None = None,
        chunk_size: int = 1024 * 1024,
        name: str = "claimcheck",
        events: EventBus | None = None,
    ) -> None:
        for method in ("begin", "commit", "reader", "release", "sweep"):
            if not callable(getattr(store, method, None)):
                raise ValueError(f"store must be a blob store (no {method}()), got {store!r}")
        if type(threshold) is not int or threshold < 0:
            raise ValueError(f"threshold must be a non-negative int, got {threshold!r}")
        self.ttl = None if ttl is None else _validate.positive_seconds(ttl, "ttl")
        if type(chunk_size) is not int or chunk_size <= 0:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        self.store = store
        self._keys = Keyring(secret)
        self.threshold = threshold
        self.clock = SYSTEM_CLOCK if clock is None else clock
        self._wall = _wall_function(clock)
        self.chunk_size = chunk_size
        self.name = _validate.non_empty_str(name, "name")
        self._events = default_bus if events is None else events

    # -- check in -----------------------------------------------------------------------------

    def _check_in_steps(
        self, payload: object, metadata: Mapping[str, Any] | None
    ) -> Steps[Envelope]:
        meta = _check_metadata(metadata)
        chunks = _chunks(payload, self.chunk_size)
        head: list[bytes] = []
        buffered = 0
        for chunk in chunks:
            head.append(chunk)
            buffered += len(chunk)
            if buffered >= self.threshold:
                break
        else:  # the whole payload is smaller than the threshold: it travels inline
            self._emit_checked_in(buffered, inline=True)
            return Envelope(inline=b"".join(head), metadata=meta)
        writer: BlobWriter = yield io_step(self.store, "begin")
        hasher = StreamHasher()
        size = 0
        try:
            for chunk in _chain(head, chunks):
                hasher.update(chunk)
                size += len(chunk)
                yield io_step(writer, "write", chunk)
            head.clear()
            now = self._wall()
            expires_at = None if self.ttl is None else now + self.ttl
            ref = secrets.token_urlsafe(12)
            digest = hasher.hexdigest()
            blob_id: str = yield io_step(
                self.store, "commit", writer, digest, size, ref, expires_at, now
            )
        except BaseException:
            writer.abort()
            raise
        finally:
            hasher.close()
        token = self._keys.sign(CLAIM, Ticket(blob_id, size, digest, ref, expires_at, meta).body())
        self._emit_checked_in(size, inline=False)
        return Envelope(ticket=token, metadata=meta)

    def check_in(self, payload: Source, metadata: Mapping[str, Any] | None = None) -> Envelope:
        """Store ``payload`` (if at least ``threshold`` bytes) and return its envelope."""
        return drive_sync(self._check_in_steps(payload, metadata), self.clock)

    async def acheck_in(
        self, payload: Source, metadata: Mapping[str, Any] | None = None
    ) -> Envelope:
        """:meth:`check_in` with the store's async operations (the source is read synchronously)."""
        return await drive_async(self._check_in_steps(payload, metadata), self.clock)

    # -- tickets ------------------------------------------------------------------------------

    def _envelope(self, env_or_raw: object) -> Envelope:
        if isinstance(env_or_raw, Envelope):
            return env_or_raw
        if isinstance(env_or_raw, str):
            return Envelope(ticket=env_or_raw)  # a bare ticket
        if isinstance(env_or_raw, bytes | bytearray | memoryview):
            return Envelope.from_bytes(env_or_raw)
        raise TicketInvalid(
            f"expected an Envelope, its bytes or a ticket, got {type(env_or_raw).__name__}"
        )

    def ticket(self, env_or_raw: object, *, allow_expired: bool = False) -> Ticket | None:
        """The verified ticket of an envelope (``None`` for an inline one); raises on a bad one."""
        return self._verify(env_or_raw, allow_expired=allow_expired)[1]

    def _verify(
        self, env_or_raw: object, *, allow_expired: bool = False
    ) -> tuple[Envelope, Ticket | None]:
        try:
            env = self._envelope(env_or_raw)
            if env.ticket is None:
                return env, None
            ticket = Ticket.from_body(self._keys.verify(CLAIM, env.ticket))
            if not isinstance(env_or_raw, str) and env.metadata != ticket.metadata:
                raise TicketInvalid("envelope metadata differs from the signed metadata")
            expires_at = ticket.expires_at
            if not allow_expired and expires_at is not None and not self._wall() < expires_at:
                raise TicketExpired("ticket has expired", expires_at)
            return env, ticket
        except (TicketInvalid, TicketExpired) as exc:
            self._emit_rejected(exc)
            raise

    # -- redeem -------------------------------------------------------------------------------

    def _redeem_steps(self, env_or_raw: object) -> Steps[bytes]:
        env, ticket = self._verify(env_or_raw)
        if ticket is None:
            assert env.inline is not None
            return env.inline
        try:
            reader: BlobReader = yield self._read_step(ticket.blob_id, 0, None)
        except PayloadMissing as exc:
            self._emit_rejected(exc)
            raise
        verifier = _Verifier(ticket.size, ticket.digest)
        parts: list[bytes] = []
        try:
            while True:
                chunk: bytes = yield io_step(reader, "read_chunk")
                if not chunk:
                    break
                verifier.update(chunk)
                parts.append(chunk)
            verifier.finish()
        except PayloadCorrupt as exc:
            self._emit_rejected(exc)
            raise
        finally:
            reader.close()
            verifier.close()
        self._emit_redeemed(ticket.size)
        return b"".join(parts)

    def _read_step(self, blob_id: str, start: int, end: int | None) -> Any:
        return io_step(self.store, "reader", blob_id, start, end)

    def redeem(self, env_or_raw: Envelope | bytes | str) -> bytes:
        """The payload, after checking signature, expiry, size and digest."""
        return drive_sync(self._redeem_steps(env_or_raw), self.clock)

    async def aredeem(self, env_or_raw: Envelope | bytes | str) -> bytes:
        return await drive_async(self._redeem_steps(env_or_raw), self.clock)

    def open(self, env_or_raw: Envelope | bytes | str) -> io.BufferedReader | io.BytesIO:
        """A binary file object streaming the payload; ``PayloadCorrupt`` when its end differs."""
        env, ticket = self._verify(env_or_raw)
        if ticket is None:
            assert env.inline is not None
            return io.BytesIO(env.inline)
        try:
            reader = self.store.reader(ticket.blob_id, 0, None)
        except PayloadMissing as exc:
            self._emit_rejected(exc)
            raise
        size = ticket.size
        raw = ClaimReader(reader, _Verifier(size, ticket.digest), lambda: self._emit_redeemed(size))
        return io.BufferedReader(raw, buffer_size=self.chunk_size)

    # -- release, sweep -----------------------------------------------------------------------

    def _release_steps(self, env_or_raw: object) -> Steps[bool]:
        ticket = self.ticket(env_or_raw, allow_expired=True)
        if ticket is None:
            return False
        deleted: bool = yield io_step(self.store, "release", ticket.blob_id, ticket.ref)
        return deleted

    def release(self, env_or_raw: Envelope | bytes | str) -> bool:
        """Drop this ticket's reference (idempotent); True if the payload was deleted."""
        return drive_sync(self._release_steps(env_or_raw), self.clock)

    async def arelease(self, env_or_raw: Envelope | bytes | str) -> bool:
        return await drive_async(self._release_steps(env_or_raw), self.clock)

    def _sweep_steps(self) -> Steps[int]:
        removed: int = yield io_step(self.store, "sweep", self._wall())
        return removed

    def sweep(self) -> int:
        """Delete payloads whose every ticket has expired, and abandoned uploads."""
        return drive_sync(self._sweep_steps(), self.clock)

    async def asweep(self) -> int:
        return await drive_async(self._sweep_steps(), self.clock)

    # -- valet key ----------------------------------------------------------------------------

    def grant(self, env_or_raw: Envelope | bytes | str, ttl: float = 300.0) -> str:
        """A signed, expiring, read-only token for one payload (never past the ticket's expiry)."""
        _validate.positive_seconds(ttl, "ttl")
        ticket = self.ticket(env_or_raw)
        if ticket is None:
            raise ValueError("an inline envelope carries its payload; there is nothing to grant")
        expires_at = self._wall() + ttl
        if ticket.expires_at is not None:
            expires_at = min(expires_at, ticket.expires_at)
        body = json.dumps(
            {"id": ticket.blob_id, "n": ticket.size, "d": ticket.digest, "e": expires_at},
            separators=(",", ":"),
            sort_keys=True,
        ).encode("ascii")
        return self._keys.sign(VALET, body)

    def verify_grant(self, token: object) -> ValetGrant:
        """The grant behind a valet token; ``TicketInvalid`` or ``TicketExpired`` otherwise."""
        try:
            body = self._keys.verify(VALET, token)
            try:
                data = json.loads(body)
            except ValueError as exc:
                raise TicketInvalid("valet token body is not JSON") from exc
            if not isinstance(data, dict) or set(data) != {"id", "n", "d", "e"}:
                raise TicketInvalid("valet token has the wrong fields")
            probe = Ticket.from_body(
                json.dumps({"id": data["id"], "n": data["n"], "d": data["d"], "r": "valet",
                            "e": data["e"], "m": {}}).encode()
            )  # fmt: skip
            if probe.expires_at is None:
                raise TicketInvalid("valet token has no expiry")
            if not self._wall() < probe.expires_at:
                raise TicketExpired("valet token has expired", probe.expires_at)
            return ValetGrant(probe.blob_id, probe.size, probe.digest, probe.expires_at)
        except (TicketInvalid, TicketExpired) as exc:
            self._emit_rejected(exc)
            raise

    async def astream(
        self, grant: ValetGrant, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Stream bytes ``[start, end)`` of a granted payload.

        A whole-payload read is verified, and its last chunk is held back until
        the digest matches: a corrupt payload ends short (``PayloadCorrupt``),
        so a client never receives all ``Content-Length`` bytes of it.  Raises
        ``PayloadMissing`` before the first chunk if the payload is gone.
        """
        stop = grant.size if end is None else min(end, grant.size)
        reader = await _maybe_async(self.store, "reader", grant.blob_id, start, stop)
        verifier = _Verifier(grant.size, grant.digest) if (start, stop) == (0, grant.size) else None
        try:
            held = b""
            while True:
                chunk: bytes = await _maybe_async(reader, "read_chunk")
                if not chunk:
                    break
                if verifier is None:
                    yield chunk
                    continue
                verifier.update(chunk)
                if held:
                    yield held
                held = chunk
            if verifier is not None:
                verifier.finish()
                if held:
                    yield held
        except PayloadCorrupt as exc:
            self._emit_rejected(exc)
            raise
        finally:
            reader.close()
            if verifier is not None:
                verifier.close()

    # -- events -------------------------------------------------------------------------------

    def _emit_checked_in(self, size: int, *, inline: bool) -> None:
        if self._events.wants(ClaimCheckedIn):
            self._events.emit(ClaimCheckedIn(self.name, size, inline))

    def _emit_redeemed(self, size: int) -> None:
        if self._events.wants(ClaimRedeemed):
            self._events.emit(ClaimRedeemed(self.name, size))

    def _emit_rejected(self, exc: Exception) -> None:
        if self._events.wants(TicketRejected):
            self._events.emit(TicketRejected(self.name, type(exc).__name__, str(exc)))

    def __repr__(self) -> str:
        return f"ClaimCheck({self.store!r}, threshold={self.threshold}, ttl={self.ttl})"


def _chain(head: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    while head:
        yield head.pop(0)
    yield from rest


async def _maybe_async(obj: object, name: str, *args: Any) -> Any:
    async_op = getattr(obj, "a" + name, None)
    if async_op is not None:
        return await async_op(*args)
    return getattr(obj, name)(*args)
