"""``RedisBlobStore``: claim-check payloads in Redis or Valkey.

Layout, with one hash tag per payload so all its keys share one cluster slot
(``uid`` is a random id given to the upload)::

    rcc:{uid}:c:<n>    chunk n (``chunk_size`` bytes, the last one shorter)
    rcc:{uid}:m        hash: size, digest, number of chunks, chunk size
    rcc:{uid}:r        hash: reference -> expiry in ms (-1: none)
    rcc:d:<digest>     uid of the stored copy of these bytes (the content index)

The content address (SHA-256) is known only after the last byte, and a key
cannot move between slots, so the chunks stay under the upload's id and the
small index key maps the digest to it: the same bytes checked in twice are
kept once.  Every key carries a TTL: chunks of an upload in progress
``upload_ttl`` (an abandoned upload expires by itself), a committed payload
as long as its longest-lived reference, or ``max_ttl`` when a reference has
no expiry.  Reference updates, release and sweep are Lua scripts on the
payload's own keys, so they are atomic.

The store works with a sync client (``redis.Redis``), an asyncio client, or
both (``async_client=``); calls of the other kind raise ``TypeError`` with a
hint.  Operations are written once as step generators and run by the shared
drivers of :mod:`resilience.policy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import math
import re
import secrets
from collections.abc import Generator
from typing import Any, Final

from resilience.claimcheck.errors import PayloadMissing
from resilience.claimcheck.store import DIGEST_ID, BlobWriter, check_commit
from resilience.clock import SYSTEM_CLOCK
from resilience.policy import Io, drive_async, drive_sync

__all__ = ["RedisBlobStore"]

_UID = re.compile(r"[0-9a-f]{32}")
NO_EXPIRY: Final = -1

_Steps = Generator[Io, Any, Any]

# KEYS: meta, refs.  ARGV: size, digest, chunks, chunk size, ref, expiry ms, ttl ms, chunk prefix.
_COMMIT = """
redis.call('HSET', KEYS[1], 'size', ARGV[1], 'digest', ARGV[2], 'chunks', ARGV[3], 'cs', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[5], ARGV[6])
local ttl = tonumber(ARGV[7])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
for i = 0, tonumber(ARGV[3]) - 1 do
  redis.call('PEXPIRE', ARGV[8] .. i, ttl)
end
return 1
"""

# KEYS: meta, refs.  ARGV: ref, expiry ms, ttl ms, chunk prefix.  0 if the payload is gone.
_ADD_REF = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local ttl = math.max(tonumber(ARGV[3]), redis.call('PTTL', KEYS[1]))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
local chunks = tonumber(redis.call('HGET', KEYS[1], 'chunks'))
for i = 0, chunks - 1 do
  redis.call('PEXPIRE', ARGV[4] .. i, ttl)
end
return 1
"""

_DELETE_ALL = """
local function delete_all(meta, refs, prefix)
  local chunks = tonumber(redis.call('HGET', meta, 'chunks') or '0')
  local digest = redis.call('HGET', meta, 'digest')
  for i = 0, chunks - 1 do
    redis.call('UNLINK', prefix .. i)
  end
  redis.call('DEL', meta, refs)
  return digest
end
"""

# KEYS: meta, refs.  ARGV: ref, chunk prefix.  The digest if this deleted the payload, else 0.
_RELEASE = (
    _DELETE_ALL
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HLEN', KEYS[2]) > 0 then return 0 end
return delete_all(KEYS[1], KEYS[2], ARGV[2])
"""
)

# KEYS: meta, refs.  ARGV: now ms, chunk prefix, 1 to delete or 0 to only report.
_SWEEP_ONE = (
    _DELETE_ALL
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local now = tonumber(ARGV[1])
local pairs_ = redis.call('HGETALL', KEYS[2])
local alive = 0
local dead = {}
for i = 1, #pairs_, 2 do
  local exp = tonumber(pairs_[i + 1])
  if exp == -1 or now < exp then alive = alive + 1 else table.insert(dead, pairs_[i]) end
end
if alive > 0 then
  if ARGV[3] == '1' and #dead > 0 then redis.call('HDEL', KEYS[2], unpack(dead)) end
  return 0
end
if ARGV[3] == '1' then return delete_all(KEYS[1], KEYS[2], ARGV[2]) end
return 1
"""
)

# KEYS: index.  ARGV: uid, ttl ms.  Make the index entry, if it still names this payload,
# live at least ttl ms (as long as the payload's longest-lived reference).
_EXTEND_INDEX = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

# KEYS: index.  ARGV: uid.  Delete the index entry only if it still names this upload.
_UNINDEX = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _is_async(client: object) -> bool:
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


class _RedisWriter:
    """Buffers at most one chunk; each full chunk is one ``SET ... PX upload_ttl``."""

    __slots__ = ("_buffer", "_store", "chunks", "done", "size", "uid")

    def __init__(self, store: RedisBlobStore) -> None:
        self._store = store
        self.uid = secrets.token_hex(16)
        self._buffer = bytearray()
        self.chunks = 0
        self.size = 0
        self.done = False

    def _flush_steps(self, final: bool) -> _Steps:
        store = self._store
        cs = store.chunk_size
        while len(self._buffer) >= cs or (final and self._buffer):
            piece = bytes(self._buffer[:cs])
            del self._buffer[:cs]
            key = store._chunk_key(self.uid, self.chunks)
            yield store._cmd("SET", key, piece, "PX", store._upload_ttl_ms)
            self.chunks += 1

    def _write_steps(self, chunk: bytes) -> _Steps:
        if self.done:
            raise ValueError("write() after commit or abort")
        self._buffer += chunk
        self.size += len(chunk)
        yield from self._flush_steps(final=False)

    def write(self, chunk: bytes) -> None:
        drive_sync(self._write_steps(chunk), SYSTEM_CLOCK)

    async def awrite(self, chunk: bytes) -> None:
        await drive_async(self._write_steps(chunk), SYSTEM_CLOCK)

    def _delete_steps(self) -> _Steps:
        keys = [self._store._chunk_key(self.uid, i) for i in range(self.chunks)]
        for start in range(0, len(keys), 512):
            yield self._store._cmd("UNLINK", *keys[start : start + 512])

    def abort(self) -> None:
        """Delete what was written (in the background with an asyncio-only store)."""
        if self.done:
            return
        self.done = True
        self._buffer = bytearray()
        store = self._store
        with contextlib.suppress(Exception):
            if store._sync is not None:
                drive_sync(self._delete_steps(), SYSTEM_CLOCK)
            else:
                task = asyncio.get_running_loop().create_task(
                    drive_async(self._delete_steps(), SYSTEM_CLOCK)
                )
                store._tasks.add(task)
                task.add_done_callback(store._tasks.discard)


class _RedisReader:
    __slots__ = ("_cs", "_end", "_pos", "_store", "_uid")

    def __init__(self, store: RedisBlobStore, uid: str, start: int, end: int, cs: int) -> None:
        self._store = store
        self._uid = uid
        self._pos = start
        self._end = end
        self._cs = cs

    def _next_steps(self) -> _Steps:
        if self._pos >= self._end:
            return b""
        index, offset = divmod(self._pos, self._cs)
        last = min(self._cs, offset + (self._end - self._pos)) - 1
        key = self._store._chunk_key(self._uid, index)
        if offset == 0 and last == self._cs - 1:
            data = yield self._store._cmd("GET", key)
        else:
            data = yield self._store._cmd("GETRANGE", key, offset, last)
        if not data:
            raise PayloadMissing(f"payload {self._uid!r} expired while being read")
        self._pos += len(data)
        return bytes(data)

    def read_chunk(self) -> bytes:
        result: bytes = drive_sync(self._next_steps(), SYSTEM_CLOCK)
        return result

    async def aread_chunk(self) -> bytes:
        result: bytes = await drive_async(self._next_steps(), SYSTEM_CLOCK)
        return result

    def close(self) -> None:
        self._pos = self._end


class RedisBlobStore:
    """Claim-check payloads in Redis: chunked, TTL on every key, one slot per payload."""

    def __init__(
        self,
        client: Any,
        *,
        async_client: Any = None,
        prefix: str = "rcc:",
        chunk_size: int = 512 * 1024,
        upload_ttl: float = 3600.0,
        max_ttl: float = 7 * 86400.0,
    ) -> None:
        if not callable(getattr(client, "execute_command", None)):
            raise TypeError(f"client must be a redis-py client, got {client!r}")
        if async_client is not None and not _is_async(async_client):
            raise TypeError(f"async_client must be a redis.asyncio client, got {async_client!r}")
        if not isinstance(prefix, str) or "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix must be a string without braces, got {prefix!r}")
        if type(chunk_size) is not int or not 1 <= chunk_size <= 64 * 1024 * 1024:
            raise ValueError(f"chunk_size must be an int in [1, 64 MiB], got {chunk_size!r}")
        for field, value in (("upload_ttl", upload_ttl), ("max_ttl", max_ttl)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0.001):
                raise ValueError(f"{field} must be a positive number of seconds, got {value!r}")
        if _is_async(client):
            self._sync, self._async = None, client
        else:
            self._sync, self._async = client, async_client
        self.prefix = prefix
        self.chunk_size = chunk_size
        self._upload_ttl_ms = max(1, int(upload_ttl * 1000))
        self._max_ttl_ms = max(1, int(max_ttl * 1000))
        self._scripts: dict[str, tuple[Any, Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        for name, source in (
            ("commit", _COMMIT),
            ("add_ref", _ADD_REF),
            ("release", _RELEASE),
            ("sweep_one", _SWEEP_ONE),
            ("unindex", _UNINDEX),
            ("extend_index", _EXTEND_INDEX),
        ):
            self._scripts[name] = (
                None if self._sync is None else self._sync.register_script(source),
                None if self._async is None else self._async.register_script(source),
            )

    # -- plumbing ---------------------------------------------------------------------------

    def _chunk_key(self, uid: str, index: int) -> str:
        return f"{self.prefix}{{{uid}}}:c:{index}"

    def _chunk_prefix(self, uid: str) -> str:
        return f"{self.prefix}{{{uid}}}:c:"

    def _meta(self, uid: str) -> str:
        return f"{self.prefix}{{{uid}}}:m"

    def _refs(self, uid: str) -> str:
        return f"{self.prefix}{{{uid}}}:r"

    def _index(self, digest: str) -> str:
        return f"{self.prefix}d:{digest}"

    def _sync_call(self, fn: Any, _async: Any, *args: Any) -> Any:
        if fn is None:
            raise TypeError(
                "RedisBlobStore has only an asyncio client: use the async methods "
                "(acheck_in, aredeem, ...), or pass a redis.Redis as client"
            )
        return fn(*args)

    def _cmd(self, *args: Any) -> Io:
        sync = None if self._sync is None else self._sync.execute_command
        async_ = None if self._async is None else self._async.execute_command
        return Io(self._sync_call, None if async_ is None else _awaiting, sync, async_, *args)

    def _script(self, name: str, keys: list[str], args: list[Any]) -> Io:
        sync, async_ = self._scripts[name]
        return Io(
            self._sync_call,
            None if async_ is None else _awaiting_script,
            sync,
            async_,
            keys,
            args,
        )

    def _ttl_ms(self, expires_at: float | None, now: float) -> int:
        if expires_at is None:
            return self._max_ttl_ms
        return max(1, min(self._max_ttl_ms, math.ceil((expires_at - now) * 1000)))

    @staticmethod
    def _expiry_ms(expires_at: float | None) -> int:
        return NO_EXPIRY if expires_at is None else math.ceil(expires_at * 1000)

    def _run_sync(self, steps: _Steps) -> Any:
        return drive_sync(steps, SYSTEM_CLOCK)

    async def _run_async(self, steps: _Steps) -> Any:
        return await drive_async(steps, SYSTEM_CLOCK)

    # -- the protocol -----------------------------------------------------------------------

    def begin(self) -> _RedisWriter:
        return _RedisWriter(self)

    def _commit_steps(
        self,
        writer: BlobWriter,
        digest: str,
        size: int,
        ref: str,
        expires_at: float | None,
        now: float,
    ) -> _Steps:
        writer = check_commit(writer, _RedisWriter, self, digest, size)
        yield from writer._flush_steps(final=True)
        ttl = self._ttl_ms(expires_at, now)
        exp = self._expiry_ms(expires_at)
        index = self._index(digest)
        uid = writer.uid
        filed = False  # our copy is committed; the index names only committed payloads
        for _ in range(3):  # the index can point at a payload that expired meanwhile
            existing = yield self._cmd("GET", index)
            if existing is not None:
                other = existing.decode() if isinstance(existing, bytes) else str(existing)
                if _UID.fullmatch(other) and other != uid:
                    added = yield self._script(
                        "add_ref",
                        [self._meta(other), self._refs(other)],
                        [ref, exp, ttl, self._chunk_prefix(other)],
                    )
                    if added:  # the same bytes are stored already: drop our copy
                        yield self._script("extend_index", [index], [other, ttl])
                        if filed:
                            yield from self._release_steps(uid, ref)
                        else:
                            yield from writer._delete_steps()
                        writer.done = True
                        return other
                yield self._script("unindex", [index], [existing])
            if not filed:
                yield self._script(
                    "commit",
                    [self._meta(uid), self._refs(uid)],
                    [size, digest, writer.chunks, self.chunk_size, ref, exp, ttl,
                     self._chunk_prefix(uid)],
                )  # fmt: skip
                filed = True
            claimed = yield self._cmd("SET", index, uid, "NX", "PX", ttl)
            if claimed:
                writer.done = True
                return uid
        writer.done = True  # the index kept changing: our copy is filed, just not shared
        return uid

    def commit(
        self,
        writer: BlobWriter,
        digest: str,
        size: int,
        ref: str,
        expires_at: float | None,
        now: float,
    ) -> str:
        uid: str = self._run_sync(self._commit_steps(writer, digest, size, ref, expires_at, now))
        return uid

    async def acommit(
        self,
        writer: BlobWriter,
        digest: str,
        size: int,
        ref: str,
        expires_at: float | None,
        now: float,
    ) -> str:
        uid: str = await self._run_async(
            self._commit_steps(writer, digest, size, ref, expires_at, now)
        )
        return uid

    def _reader_steps(self, blob_id: str, start: int, end: int | None) -> _Steps:
        if not (isinstance(blob_id, str) and _UID.fullmatch(blob_id)):
            raise PayloadMissing(f"no payload {blob_id!r}")
        size, cs = yield self._cmd("HMGET", self._meta(blob_id), "size", "cs")
        if size is None or cs is None:
            raise PayloadMissing(f"no payload {blob_id!r}")
        total = int(size)
        first = max(0, min(start, total))
        stop = total if end is None else max(first, min(end, total))
        return _RedisReader(self, blob_id, first, stop, int(cs))

    def reader(self, blob_id: str, start: int = 0, end: int | None = None) -> _RedisReader:
        result: _RedisReader = self._run_sync(self._reader_steps(blob_id, start, end))
        return result

    async def areader(self, blob_id: str, start: int = 0, end: int | None = None) -> _RedisReader:
        result: _RedisReader = await self._run_async(self._reader_steps(blob_id, start, end))
        return result

    def _unindex_steps(self, digest: Any, uid: str) -> _Steps:
        if digest:
            text = digest.decode() if isinstance(digest, bytes) else str(digest)
            if DIGEST_ID.fullmatch(text):
                yield self._script("unindex", [self._index(text)], [uid])

    def _release_steps(self, blob_id: str, ref: str) -> _Steps:
        if not (isinstance(blob_id, str) and _UID.fullmatch(blob_id)):
            return False
        digest = yield self._script(
            "release",
            [self._meta(blob_id), self._refs(blob_id)],
            [ref, self._chunk_prefix(blob_id)],
        )
        yield from self._unindex_steps(digest, blob_id)
        return bool(digest)

    def release(self, blob_id: str, ref: str) -> bool:
        return bool(self._run_sync(self._release_steps(blob_id, ref)))

    async def arelease(self, blob_id: str, ref: str) -> bool:
        return bool(await self._run_async(self._release_steps(blob_id, ref)))

    def _delete_steps(self, blob_id: str) -> _Steps:
        if not (isinstance(blob_id, str) and _UID.fullmatch(blob_id)):
            return False
        digest = yield self._cmd("HGET", self._meta(blob_id), "digest")
        if digest is None:
            return False
        yield self._script(
            "sweep_one",
            [self._meta(blob_id), self._refs(blob_id)],
            [2**62, self._chunk_prefix(blob_id), "1"],
        )  # every reference counts as expired: deletes
        yield from self._unindex_steps(digest, blob_id)
        return True

    def delete(self, blob_id: str) -> bool:
        return bool(self._run_sync(self._delete_steps(blob_id)))

    async def adelete(self, blob_id: str) -> bool:
        return bool(await self._run_async(self._delete_steps(blob_id)))

    def _scan_steps(self) -> _Steps:
        """Uids of every committed payload (SCAN over the meta keys; per node on a cluster)."""
        pattern = f"{self.prefix}{{*}}:m"
        sync, async_ = self._sync, self._async
        list_sync = None if sync is None else functools.partial(_listing, sync.scan_iter)
        list_async = None if async_ is None else functools.partial(_alisting, async_.scan_iter)
        awaiting = None if list_async is None else _awaiting
        keys = yield Io(self._sync_call, awaiting, list_sync, list_async, pattern)
        uids: set[str] = set()
        for key in keys:
            text = key.decode() if isinstance(key, bytes) else str(key)
            uid = text[len(self.prefix) + 1 : -3]
            if _UID.fullmatch(uid):
                uids.add(uid)
        return sorted(uids)

    def _sweep_steps(self, now: float, delete: bool) -> _Steps:
        found: list[str] = []
        now_ms = math.floor(now * 1000)
        for uid in (yield from self._scan_steps()):
            result = yield self._script(
                "sweep_one",
                [self._meta(uid), self._refs(uid)],
                [now_ms, self._chunk_prefix(uid), "1" if delete else "0"],
            )
            if result:
                found.append(uid)
                if delete:
                    yield from self._unindex_steps(result, uid)
        return found

    def expired(self, now: float) -> list[str]:
        found: list[str] = self._run_sync(self._sweep_steps(now, delete=False))
        return found

    async def aexpired(self, now: float) -> list[str]:
        found: list[str] = await self._run_async(self._sweep_steps(now, delete=False))
        return found

    def sweep(self, now: float) -> int:
        """Delete payloads whose references all expired (abandoned uploads expire by TTL)."""
        return len(self._run_sync(self._sweep_steps(now, delete=True)))

    async def asweep(self, now: float) -> int:
        return len(await self._run_async(self._sweep_steps(now, delete=True)))

    def __repr__(self) -> str:
        return f"RedisBlobStore(prefix={self.prefix!r}, chunk_size={self.chunk_size})"


async def _awaiting(sync: Any, async_: Any, *args: Any) -> Any:
    return await async_(*args)


async def _awaiting_script(sync: Any, async_: Any, keys: list[str], args: list[Any]) -> Any:
    return await async_(keys=keys, args=args)


def _listing(scan_iter: Any, pattern: str) -> list[Any]:
    """Every key matching ``pattern`` (the client's ``scan_iter`` walks each cluster node)."""
    return list(scan_iter(match=pattern, count=1000))


async def _alisting(scan_iter: Any, pattern: str) -> list[Any]:
    return [key async for key in scan_iter(match=pattern, count=1000)]
