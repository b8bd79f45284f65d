"""``RedisIdempotencyStore``: idempotency records shared by every host.

Each transition of :mod:`resilience.idempotency.record` is one atomic Lua
script (``lua/idem_*.lua`` after the shared prelude and ``idem_common.lua``),
run by the same runners as the rate limiter (one ``EVALSHA`` round trip,
``EVAL`` after ``NOSCRIPT``, bounded by ``timeout``).  A record is one hash,
``<key_prefix>{<key>}``, so it sits in one Cluster slot; every write sets the
key's expiry to the record's (lease or retention) plus ``ttl_margin``.  Time
is the server's ``TIME`` (``clock="server"``), so hosts with skewed clocks
agree on leases; ``clock="client"`` uses the caller's ``now`` (tests).

Outages: ``on_store_error="fail_closed"`` (the default) raises
:class:`~resilience.errors.StoreUnavailable` when a lease cannot be taken
(the HTTP middleware answers 503): a refused request can be retried, a
duplicated charge cannot be undone.  ``"fail_open"`` runs the call
unprotected instead.  Either way the failure is counted and emitted as
``StoreFailed``.  Renewals, completions and releases that fail are
reported to the caller, which never re-raises them (the call already ran).

A transition that fails is sent once more (on a fresh connection): each is
safe to repeat with the same token, and a completion lost to a connection
the server dropped while idle would otherwise leave its key in progress
until the lease ran out, and then run it again.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Literal

from resilience._validate import one_of
from resilience.errors import InvalidKey, StoreUnavailable
from resilience.events import EventBus, StoreFailed, resolve_bus
from resilience.idempotency.record import (
    CLAIM_ACQUIRED,
    CLAIM_REUSED,
    CLAIM_UNPROTECTED,
    IN_PROGRESS,
    REPLAY,
    Claim,
    Record,
)
from resilience.redis._scripts import Call, Script, _read
from resilience.redis.store import ClockChoice, RedisStore
from resilience.redis.table import _escape, _number

__all__ = ["RedisIdempotencyStore"]

OnStoreError = Literal["fail_open", "fail_closed"]


def _script(op: str) -> Script:
    source = _read("prelude") + b"\n" + _read("idem_common") + b"\n" + _read(f"idem_{op}")
    return Script(f"idem_{op}", source, hashlib.sha1(source).hexdigest())


_SCRIPTS = {op: _script(op) for op in ("begin", "renew", "complete", "release", "get")}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


class RedisIdempotencyStore:
    """Idempotency records in Redis or Valkey: one atomic script per transition.

    ``client``: a ``redis.Redis`` or ``redis.asyncio.Redis`` (or cluster)
    client, ``async_client``: an asyncio one to pair with a sync ``client``;
    or pass ``store=`` an existing :class:`~resilience.redis.RedisStore` to
    share its connections.  ``key_prefix`` starts every key.  ``timeout``
    bounds each round trip.  ``ttl_margin``: seconds a key outlives its
    record.  ``on_store_error``: ``"fail_closed"`` (default) or
    ``"fail_open"``.
    """

    local = False

    def __init__(
        self,
        client: Any = None,
        key_prefix: str = "idem:",
        *,
        async_client: Any = None,
        store: RedisStore | None = None,
        clock: ClockChoice = "server",
        timeout: float = 0.25,
        ttl_margin: float = 1.0,
        connections: int = 4,
        on_store_error: OnStoreError = "fail_closed",
        max_key_length: int = 4096,
        events: EventBus | None = None,
    ) -> None:
        if store is None:
            if client is None:
                raise ValueError("client must be a redis-py client (or pass store=RedisStore)")
            store = RedisStore(
                client,
                async_client=async_client,
                key_prefix=key_prefix,
                clock=clock,
                timeout=timeout,
                ttl_margin=ttl_margin,
                connections=connections,
            )
        elif not isinstance(store, RedisStore):
            raise ValueError(f"store must be a RedisStore, got {store!r}")
        elif client is not None or async_client is not None:
            raise ValueError("pass either client(s) or store=, not both")
        if not isinstance(key_prefix, str) or "{" in key_prefix or "}" in key_prefix:
            raise ValueError(f"key_prefix must be a string without braces, got {key_prefix!r}")
        one_of(on_store_error, "on_store_error", ("fail_open", "fail_closed"))
        self.store = store
        self.key_prefix = key_prefix
        self.on_store_error: OnStoreError = on_store_error
        self.max_key_length = max_key_length
        self.events = resolve_bus(events)
        self.store_errors = 0
        self.resent = 0  # transitions sent a second time after a failure
        self._server_clock = store.clock == "server"
        margin = _number(float(math.ceil(store.ttl_margin * 1000)))
        self._calls = {op: Call(script, (margin,)) for op, script in _SCRIPTS.items()}

    @classmethod
    def from_url(
        cls,
        url: str,
        key_prefix: str = "idem:",
        *,
        timeout: float = 0.25,
        clock: ClockChoice = "server",
        on_store_error: OnStoreError = "fail_closed",
        events: EventBus | None = None,
        **client_options: Any,
    ) -> RedisIdempotencyStore:
        """A store with its own sync and asyncio clients for ``url`` (``RedisStore.from_url``)."""
        store = RedisStore.from_url(url, timeout=timeout, clock=clock, **client_options)
        return cls(key_prefix=key_prefix, store=store, on_store_error=on_store_error, events=events)

    # -- running scripts ------------------------------------------------------------------

    def _key(self, key: str) -> bytes:
        if not isinstance(key, str):
            raise InvalidKey(f"idempotency key must be a str, got {type(key).__name__}")
        if len(key) > self.max_key_length:
            raise InvalidKey(
                f"idempotency key is {len(key)} characters; the store accepts {self.max_key_length}"
            )
        return f"{self.key_prefix}{{{_escape(key)}}}".encode("utf-8", "surrogatepass")

    def _clock(self, now: float) -> bytes:
        return b"" if self._server_clock else _number(now)

    def _run(self, op: str, key: str, now: float, arg: bytes) -> Any:
        run = self.store.run_sync
        if run is None:
            raise TypeError(
                "RedisIdempotencyStore has only an asyncio client: use async code, or pass a "
                "redis.Redis as client and the asyncio one as async_client"
            )
        call, packed, clock = self._calls[op], self._key(key), self._clock(now)
        try:
            return run(call, packed, clock, arg)
        except StoreUnavailable:
            # Once more, on a fresh connection (one the server dropped while idle, say
            # after a restart, fails its next call).  Every transition is safe to send
            # twice (resilience.idempotency.record), so a lost reply costs nothing.
            self.resent += 1
            return run(call, packed, clock, arg)

    async def _arun(self, op: str, key: str, now: float, arg: bytes) -> Any:
        run = self.store.run_async
        if run is None:
            raise TypeError(
                "RedisIdempotencyStore has only a sync client: pass a redis.asyncio.Redis as "
                "async_client"
            )
        call, packed, clock = self._calls[op], self._key(key), self._clock(now)
        try:
            return await run(call, packed, clock, arg)
        except StoreUnavailable:
            self.resent += 1  # see _run
            return await run(call, packed, clock, arg)

    def _failed(self, exc: StoreUnavailable, operation: str, action: str) -> None:
        self.store_errors += 1
        bus = self.events
        if bus.wants(StoreFailed):
            bus.emit(StoreFailed("idempotency", operation, f"{type(exc).__name__}: {exc}", action))

    def _outage(self, exc: StoreUnavailable) -> Claim:
        if self.on_store_error == "fail_open":
            self._failed(exc, "begin", "fail_open")
            return CLAIM_UNPROTECTED
        self._failed(exc, "begin", "fail_closed")
        raise exc

    # -- arguments and replies --------------------------------------------------------------

    @staticmethod
    def _begin_arg(fingerprint: str, token: str, lease: float) -> bytes:
        return b"%s %s %s" % (_number(float(lease)), token.encode(), fingerprint.encode())

    @staticmethod
    def _claim(reply: list[Any]) -> Claim:
        status = _text(reply[0])
        if status == "acquired":
            return CLAIM_ACQUIRED
        if status == "reused":
            return CLAIM_REUSED
        if status == "replay":
            return Claim(REPLAY, _bytes(reply[1]))
        return Claim(IN_PROGRESS, None, float(_text(reply[1])))

    @staticmethod
    def _record(reply: list[Any]) -> Record | None:
        if not reply:
            return None
        done = _text(reply[0]) == "1"
        return Record(
            done,
            _text(reply[1]),
            _text(reply[2]),
            float(_text(reply[3])),
            _bytes(reply[4]) if done else None,
        )

    # -- the store protocol (sync) ----------------------------------------------------------

    def begin(self, key: str, fingerprint: str, token: str, lease: float, now: float) -> Claim:
        try:
            reply = self._run("begin", key, now, self._begin_arg(fingerprint, token, lease))
        except StoreUnavailable as exc:
            return self._outage(exc)
        return self._claim(reply)

    def renew(self, key: str, token: str, lease: float, now: float) -> bool:
        arg = b"%s %s" % (_number(float(lease)), token.encode())
        return bool(self._run("renew", key, now, arg))

    def complete(self, key: str, token: str, result: bytes, ttl: float, now: float) -> bool:
        arg = b"%s %s %s" % (_number(float(ttl)), token.encode(), result)
        return bool(self._run("complete", key, now, arg))

    def release(self, key: str, token: str, now: float) -> bool:
        return bool(self._run("release", key, now, token.encode()))

    def get(self, key: str, now: float) -> Record | None:
        return self._record(self._run("get", key, now, b""))

    # -- async twins: the same scripts on the asyncio client -------------------------------

    async def abegin(
        self, key: str, fingerprint: str, token: str, lease: float, now: float
    ) -> Claim:
        try:
            reply = await self._arun("begin", key, now, self._begin_arg(fingerprint, token, lease))
        except StoreUnavailable as exc:
            return self._outage(exc)
        return self._claim(reply)

    async def arenew(self, key: str, token: str, lease: float, now: float) -> bool:
        arg = b"%s %s" % (_number(float(lease)), token.encode())
        return bool(await self._arun("renew", key, now, arg))

    async def acomplete(self, key: str, token: str, result: bytes, ttl: float, now: float) -> bool:
        arg = b"%s %s %s" % (_number(float(ttl)), token.encode(), result)
        return bool(await self._arun("complete", key, now, arg))

    async def arelease(self, key: str, token: str, now: float) -> bool:
        return bool(await self._arun("release", key, now, token.encode()))

    async def aget(self, key: str, now: float) -> Record | None:
        return self._record(await self._arun("get", key, now, b""))

    def close(self) -> None:
        """Close the connections of the underlying ``RedisStore`` (see ``RedisStore.close``)."""
        self.store.close()

    async def aclose(self) -> None:
        await self.store.aclose()

    def __repr__(self) -> str:
        return (
            f"RedisIdempotencyStore(key_prefix={self.key_prefix!r}, clock={self.store.clock!r}, "
            f"on_store_error={self.on_store_error!r})"
        )
