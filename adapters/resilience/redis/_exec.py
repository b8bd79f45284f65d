"""One round trip per call: ``EVALSHA``, with ``EVAL`` after ``NOSCRIPT``.

For plain ``redis.Redis`` / ``redis.asyncio.Redis`` clients the runner takes
a connection from the client's own pool, sends a command packed once per
limiter (:class:`~resilience.redis._scripts.Call`) and reads the reply
itself.  That skips redis-py's per-command machinery (argument encoding,
retries with backoff, observability hooks), which costs about as much as the
script: and a decision is cheap to lose, so the limiter's ``on_store_error``
policy or ``fallback`` should answer at once rather than a retry loop.
Other clients (cluster, single-connection) go through ``execute_command``,
which routes by key.

Every failure (connection refused or reset, timeouts, ``LOADING``, ``BUSY``,
``READONLY`` after a failover, cluster errors, a script error) becomes
:class:`~resilience.errors.StoreUnavailable`, the one error the rate limiter
turns into its policy.  An async call is bounded by the client's socket
timeouts when they are at most ``timeout`` (``RedisStore.from_url`` builds
such clients); otherwise the runner caps it with ``asyncio.timeout``, which
costs a timer per call.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from redis.exceptions import NoScriptError, RedisClusterException, RedisError
from resilience.errors import StoreUnavailable
from resilience.redis._scripts import Call

__all__ = [
    "REDIS_ERRORS",
    "AsyncRunner",
    "SyncRunner",
    "bounded_by_client",
    "timeout_problems",
    "unavailable",
]

# TimeoutError (from asyncio.timeout) is an OSError; so are raw socket errors.
REDIS_ERRORS = (RedisError, RedisClusterException, OSError)


def unavailable(exc: BaseException, timeout: float) -> StoreUnavailable:
    """The typed error for a failed call, saying what went wrong."""
    if isinstance(exc, TimeoutError) and not isinstance(exc, RedisError):
        return StoreUnavailable(f"redis did not answer within timeout={timeout}s")
    return StoreUnavailable(f"redis: {type(exc).__name__}: {exc}")


def _own_pool(client: Any) -> tuple[Any, tuple[str, ...]] | None:
    """The pool to borrow connections from, and ``get_connection``'s arguments; or None."""
    if getattr(client, "single_connection_client", False) or getattr(client, "connection", None):
        return None
    pool = getattr(client, "connection_pool", None)
    get = getattr(pool, "get_connection", None)
    if not callable(get) or not callable(getattr(pool, "release", None)):
        return None
    try:
        needs_name = inspect.signature(get).parameters["command_name"].default is inspect._empty
    except (KeyError, TypeError, ValueError):
        needs_name = False
    return pool, ("EVALSHA",) if needs_name else ()  # redis-py < 5.1 wants a command name


def timeout_problems(client: Any, timeout: float, *, retries_apply: bool) -> list[str]:
    """What in a client's settings lets one call outlive ``timeout`` (best effort).

    Empty when the client's connect and read timeouts are set and at most
    ``timeout`` (and, when its ``execute_command`` is used, it does not retry).
    A client whose settings cannot be read (cluster) reports a problem.
    """
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict):
        return ["no readable connection settings"]
    problems = []
    for option in ("socket_timeout", "socket_connect_timeout"):
        value = kwargs.get(option)
        if value is None or value > timeout:
            problems.append(f"{option}={value!r}")
    retry = kwargs.get("retry")
    retries = getattr(retry, "_retries", 0) if retry is not None and retries_apply else 0
    if isinstance(retries, int) and retries > 0:
        problems.append(f"retry with {retries} retries")
    return problems


def bounded_by_client(client: Any, timeout: float) -> bool:
    """True when the client's own timeouts keep a lean-path call within ``timeout``."""
    return not timeout_problems(client, timeout, retries_apply=False)


class _Runner:
    __slots__ = ("_client", "_get_args", "_pool", "timeout")

    def __init__(self, client: Any, timeout: float) -> None:
        self._client = client
        self.timeout = timeout
        self._pool: Any = None
        self._get_args: tuple[str, ...] = ()
        own = _own_pool(client)
        if own is not None:
            self._pool, self._get_args = own

    @property
    def uses_pool(self) -> bool:
        """True when commands bypass ``execute_command`` (and so its retries)."""
        return self._pool is not None


class SyncRunner(_Runner):
    """Runs one-key scripts on a sync client."""

    __slots__ = ()

    def __call__(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        """Run ``call``; raise ``StoreUnavailable`` on any failure."""
        try:
            pool = self._pool
            if pool is None:
                return self._via_client(call, key, now, cost)
            conn = pool.get_connection(*self._get_args)
            try:
                conn.send_packed_command([call.evalsha(key, now, cost)])
                try:
                    return conn.read_response(disable_decoding=True)
                except NoScriptError:  # SCRIPT FLUSH, restart, failover: EVAL caches it again
                    conn.send_packed_command([call.eval(key, now, cost)])
                    return conn.read_response(disable_decoding=True)
            finally:
                pool.release(conn)
        except REDIS_ERRORS as exc:
            raise unavailable(exc, self.timeout) from exc

    def _via_client(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        client = self._client
        args = (1, key, now, cost, *call.fixed)
        try:
            return client.execute_command("EVALSHA", call.script.sha, *args)
        except NoScriptError:
            return client.execute_command("EVAL", call.script.source, *args)


class AsyncRunner(_Runner):
    """Runs one-key scripts on an asyncio client, never for longer than about ``timeout``."""

    __slots__ = ("capped",)

    def __init__(self, client: Any, timeout: float) -> None:
        super().__init__(client, timeout)
        self.capped = not (self.uses_pool and bounded_by_client(client, timeout))

    async def __call__(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        """Run ``call``; raise ``StoreUnavailable`` on any failure or after ``timeout``."""
        pool = self._pool
        if self.capped or pool is None:
            return await self._capped(call, key, now, cost)
        # The hot path, inline: each extra coroutine layer costs about 1% of a PING.
        try:
            conn = await pool.get_connection(*self._get_args)
            try:
                await conn.send_packed_command([call.evalsha(key, now, cost)])
                try:
                    return await conn.read_response(disable_decoding=True)
                except NoScriptError:
                    await conn.send_packed_command([call.eval(key, now, cost)])
                    return await conn.read_response(disable_decoding=True)
            finally:
                await pool.release(conn)
        except REDIS_ERRORS as exc:
            raise unavailable(exc, self.timeout) from exc

    async def _capped(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        """Any client, under ``asyncio.timeout``."""
        try:
            async with asyncio.timeout(self.timeout):
                pool = self._pool
                if pool is None:
                    return await self._via_client(call, key, now, cost)
                conn = await pool.get_connection(*self._get_args)
                try:
                    await conn.send_packed_command([call.evalsha(key, now, cost)])
                    try:
                        return await conn.read_response(disable_decoding=True)
                    except NoScriptError:
                        await conn.send_packed_command([call.eval(key, now, cost)])
                        return await conn.read_response(disable_decoding=True)
                finally:
                    await pool.release(conn)
        except REDIS_ERRORS as exc:
            raise unavailable(exc, self.timeout) from exc

    async def _via_client(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        client = self._client
        args = (1, key, now, cost, *call.fixed)
        try:
            return await client.execute_command("EVALSHA", call.script.sha, *args)
        except NoScriptError:
            return await client.execute_command("EVAL", call.script.source, *args)
