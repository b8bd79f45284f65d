"""``RedisTable``: one limiter's keys in Redis, one script call per decision.

The table turns a limiter's algorithm into a script and its parameters,
packed once (msgpack doubles, unpacked by the script in one call), so a
decision only encodes the key, the clock reading and the cost, sends one
``EVALSHA`` and builds the ``Decision`` from a one-line reply
(``"<allowed> <remaining> <retry_after> <reset_after> <delay>"``; floats as
``%.17g``, which reads back bit for bit).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from resilience.errors import InvalidKey, StoreError
from resilience.ratelimit.algorithms import (
    GCRA,
    Algorithm,
    FixedWindow,
    LeakyBucket,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from resilience.ratelimit.decision import Decision, from_values
from resilience.redis._scripts import Call, Script, script

if TYPE_CHECKING:
    from resilience.redis.store import RedisStore

__all__ = ["RedisTable", "plan"]


_VIRTUAL_TIME: dict[type[Algorithm], str] = {TokenBucket: "tb", GCRA: "gcra", LeakyBucket: "lb"}
_ONE = (b"1", "1")  # "allowed", from a bytes reply or a decoding cluster client
_make = from_values  # six reply values -> a Decision (shaped when delay != 0)


def _packed(*values: float) -> bytes:
    """Numbers as consecutive msgpack float64s: the script unpacks them in one call, exactly."""
    return b"".join(b"\xcb" + struct.pack(">d", value) for value in values)


def _number(value: float) -> bytes:
    """A cost or clock reading as text Lua's ``tonumber`` reads back to the same double."""
    if value.__class__ is int:
        return b"%d" % value
    return repr(float(value)).encode()


def plan(algorithm: Algorithm) -> tuple[Script, str, tuple[float, ...]]:
    """The script, key suffix and parameters (packed after now and cost) for ``algorithm``.

    Limiters with the same name share state: that is how processes share a
    limit.  The suffix keeps apart limiters of different kinds that happen to
    share a name (each keeps its own state, as they would in memory).
    """
    kind = type(algorithm)
    if isinstance(algorithm, TokenBucket | GCRA | LeakyBucket) and kind in _VIRTUAL_TIME:
        shape = isinstance(algorithm, LeakyBucket) and algorithm.mode == "shape"
        code = _VIRTUAL_TIME[kind]
        return script("virtual_time"), code, (algorithm.interval, algorithm.capacity, float(shape))
    if kind is FixedWindow:
        return script("fixed_window"), "fw", (algorithm.period, algorithm.limit)
    if kind is SlidingWindowLog:
        return script("sliding_log"), "sl", (algorithm.period, algorithm.limit)
    if isinstance(algorithm, SlidingWindowCounter) and kind is SlidingWindowCounter:
        buckets = algorithm.buckets
        if buckets > MAX_REDIS_BUCKETS:
            raise ValueError(
                f"buckets: the Redis script packs the ring in one MessagePack value and "
                f"handles at most {MAX_REDIS_BUCKETS} buckets, got {buckets}"
            )
        width = algorithm.period / buckets  # the same division as the algorithm's
        return script("sliding_counter"), f"sc{buckets}", (width, algorithm.limit, buckets)
    raise ValueError(
        f"algorithm: RedisStore has no script for {kind.__name__}; "
        "use one of TokenBucket, GCRA, LeakyBucket, FixedWindow, SlidingWindowLog, "
        "SlidingWindowCounter"
    )


MAX_REDIS_BUCKETS = 3_000
"""Lua's unpack/cmsgpack limits (measured: about 4,000) with a margin."""


def _escape(text: str) -> str:
    """Percent-escape braces (and ``%``): the only hash tag is the braces we put around the key.

    An empty key becomes ``%`` (which no escaped text can be), so the tag is
    never empty: Redis hashes a key with an empty ``{}`` tag as a whole, which
    would split one client's keys across slots.
    """
    if "%" in text or "{" in text or "}" in text:
        return text.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return text or "%"


class RedisTable:
    """One limiter's per-key state in a :class:`~resilience.redis.RedisStore`."""

    __slots__ = (
        "_call",
        "_head",
        "_limit",
        "_max_key_length",
        "_refund",
        "_server_clock",
        "_store",
        "_tail",
        "algorithm",
        "name",
        "now",
    )

    def __init__(
        self, store: RedisStore, algorithm: Algorithm, now: Callable[[], float], name: str
    ) -> None:
        self._store = store
        self.algorithm = algorithm
        self.name = name
        self.now = now
        decide, code, params = plan(algorithm)
        margin = round(store.ttl_margin * 1000)
        self._call = Call(decide, (_packed(*params, margin),))
        self._refund: Call | None = None
        if decide.name == "virtual_time":
            self._refund = Call(script("virtual_time_refund"), (_packed(params[0], margin),))
        self._limit = algorithm.limit
        self._server_clock = store.clock == "server"
        self._max_key_length = store.max_key_length
        self._head = f"{store.key_prefix}{_escape(name)}:{{".encode()
        self._tail = f"}}:{code}".encode()

    def redis_key(self, key: str) -> bytes:
        """The Redis key holding ``key``'s state: ``<prefix><name>:{<key>}:<kind>``.

        The braces make ``key`` the Redis Cluster hash tag, so every limiter's
        state for one client lands in the same slot.  Braces and ``%`` in
        ``key`` (or ``name``) are percent-escaped, the empty key is ``%``.
        """
        if key.__class__ is not str:
            raise InvalidKey(f"rate-limit key must be a str, got {type(key).__name__}")
        if len(key) > self._max_key_length:
            raise InvalidKey(
                f"rate-limit key is {len(key)} characters; the store accepts {self._max_key_length}"
            )
        if "{" in key or "}" in key or "%" in key or not key:
            key = _escape(key)
        return self._head + key.encode("utf-8", "surrogatepass") + self._tail

    def _now(self, now: float) -> bytes:
        """``b""`` tells the script to read the server's clock."""
        return b"" if self._server_clock else _number(now)

    def _decision(self, reply: bytes | str) -> Decision:
        allowed, remaining, retry_after, reset_after, delay = reply.split()
        return _make(
            (
                allowed in _ONE,
                self._limit,
                int(remaining),
                float(retry_after),
                float(reset_after),
                float(delay),
            )
        )

    def decide(self, key: str, cost: float, now: float) -> Decision:
        run = self._store.run_sync
        if run is None:
            raise TypeError(self._store.missing_client("sync"))
        reply = run(self._call, self.redis_key(key), self._now(now), _number(cost))
        return self._decision(reply)

    async def adecide(self, key: str, cost: float, now: float) -> Decision:
        run = self._store.run_async
        if run is None:
            raise TypeError(self._store.missing_client("async"))
        reply = await run(self._call, self.redis_key(key), self._now(now), _number(cost))
        return self._decision(reply)

    def refund(self, key: str, cost: float, now: float) -> None:
        """Best effort: give back a cancelled shaped waiter's slot.

        The limiter calls this while a cancellation or timeout is already
        unwinding, so it never raises a store error.  Inside a running event
        loop it schedules the call on the async client instead of blocking.
        """
        refund = self._refund
        if refund is None:
            return
        store = self._store
        args = (self.redis_key(key), self._now(now), _number(cost))
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and store.run_async is not None:
            store.spawn(store.run_async(refund, *args))
            return
        if store.run_sync is None:
            store.refund_errors += 1
            return
        try:
            store.run_sync(refund, *args)
        except StoreError:
            store.refund_errors += 1

    def __repr__(self) -> str:
        return f"RedisTable({self.algorithm!r}, name={self.name!r})"
