"""One round trip per call: ``EVALSHA``, with ``EVAL`` after ``NOSCRIPT``.

For plain ``redis.Redis`` / ``redis.asyncio.Redis`` clients the runner sends
a command packed once per limiter (:class:`~resilience.redis._scripts.Call`)
on a connection and reads the reply itself.  That skips redis-py's
per-command machinery (argument encoding, retries with backoff,
observability hooks), which costs about as much as the script: and a
decision is cheap to lose, so the limiter's ``on_store_error`` policy or
``fallback`` should answer at once rather than a retry loop.

The connections are the runner's own: up to ``connections`` of them, made
with the client's pool settings, kept open and reused last-in first-out.
Borrowing from the client's pool instead costs 6-8 us per call in redis-py 8
(a lock, a liveness probe, metrics hooks): about a tenth of a loopback round
trip, more than the script itself.  When all of its own connections are
busy, a call borrows one from the client's pool, so concurrency is bounded
by the pool's settings as before.  A connection whose reply is in doubt
(timeout, cancellation, error) is closed and reconnects on its next use; one
that the server closed while it sat idle (a restart, ``CLIENT KILL``) fails
that one call (never resent: the command may have run) and reconnects on its
next use.  A forked child never touches its
parent's connections.  ``connections=0`` borrows every call from the pool.

Cluster clients get one such runner per master
(:mod:`resilience.redis._cluster` routes by slot); single-connection clients
go through ``execute_command``.  A redirect reply (``MOVED``, ``ASK``) is a
whole reply that says the script did not run: its connection stays open, and
:meth:`SyncRunner.asked` / :meth:`AsyncRunner.asked` send ``ASKING`` and the
script together on one connection of the node an ``ASK`` names.

Every failure (connection refused or reset, timeouts, ``LOADING``, ``BUSY``,
``READONLY`` after a failover, cluster errors, a script error, and any other
``Exception`` the client raises) becomes
:class:`~resilience.errors.StoreUnavailable`, the one error the rate limiter
turns into its policy.  An async call is bounded by the client's socket
timeouts when they are at most ``timeout`` (``RedisStore.from_url`` builds
such clients); otherwise the runner caps it with ``asyncio.timeout``, which
costs a timer per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
import weakref
from collections import deque
from collections.abc import Coroutine
from typing import Any

from redis.exceptions import AskError, NoScriptError, RedisClusterException, RedisError
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

# The errors a client raises by design (TimeoutError from asyncio.timeout is an OSError);
# the runners turn every Exception into StoreUnavailable, these and any other.
REDIS_ERRORS = (RedisError, RedisClusterException, OSError)


_get_running_loop = asyncio.get_running_loop
ASKING = b"*1\r\n$6\r\nASKING\r\n"
"""``ASKING``: lets the next command on its connection run on a node importing the slot."""
_RUNNERS: weakref.WeakSet[_Runner] = weakref.WeakSet()
_ABANDONED: list[Any] = []  # a forked child's copies of its parent's sockets: never used or closed


def _after_fork_in_child() -> None:
    for runner in list(_RUNNERS):
        _ABANDONED.extend(runner._idle)
        runner._idle.clear()
        runner._opened = 0
        runner._lock = threading.Lock()  # the parent's may have been held by another thread


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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


def timeout_problems(client: Any, timeout: float) -> list[str]:
    """What in a client's settings lets one call outlive ``timeout`` (best effort).

    Empty when the client's connect and read timeouts are set and at most
    ``timeout`` and it does not retry: redis-py retries commands sent through
    ``execute_command`` and, on pooled connections, the connect itself.  A
    client whose settings cannot be read (cluster) reports a problem.
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
    retries = getattr(retry, "_retries", 0) if retry is not None else 0
    if isinstance(retries, int) and retries > 0:
        problems.append(f"retry with {retries} retries")
    return problems


def bounded_by_client(client: Any, timeout: float) -> bool:
    """True when the client's own settings keep a call on a pooled connection within ``timeout``."""
    return not timeout_problems(client, timeout)


def _own_settings(kwargs: dict[str, Any], timeout: float, no_retry: Any) -> dict[str, Any]:
    """The pool's connection settings, with timeouts of at most ``timeout`` and no retries."""
    settings = dict(kwargs)
    for option in ("socket_timeout", "socket_connect_timeout"):
        value = settings.get(option)
        if value is None or value > timeout:
            settings[option] = timeout
    settings["retry"] = no_retry
    return settings


class _Runner:
    __slots__ = (
        "__weakref__",
        "_client",
        "_factory",
        "_get_args",
        "_idle",
        "_limit",
        "_lock",
        "_opened",
        "_pool",
        "_settings",
        "timeout",
    )

    def __init__(
        self, client: Any, timeout: float, connections: int = 0, *, source: Any = None
    ) -> None:
        self._client = client
        self.timeout = timeout
        self._pool: Any = None
        self._get_args: tuple[str, ...] = ()
        own = _own_pool(client)
        if own is not None:
            self._pool, self._get_args = own
        # Where own connections get their class and settings: the pool, or (for an
        # asyncio cluster node, which has no pool object) the node itself.
        source = self._pool if source is None else source
        factory = getattr(source, "connection_class", None)
        kwargs = getattr(source, "connection_kwargs", None)
        usable = callable(factory) and isinstance(kwargs, dict)
        self._limit = connections if usable else 0
        self._factory: Any = factory
        self._settings: dict[str, Any] = (
            _own_settings(kwargs, timeout, self._no_retry()) if usable else {}  # type: ignore[arg-type]
        )
        self._opened = 0  # own connections made (idle or in use)
        self._idle: deque[Any] = deque()
        self._lock = threading.Lock()
        _RUNNERS.add(self)

    @property
    def uses_pool(self) -> bool:
        """True when commands bypass ``execute_command`` (and so its retries)."""
        return self._pool is not None

    @property
    def idle_connections(self) -> int:
        """Own connections open and waiting for a call."""
        return len(self._idle)

    @staticmethod
    def _no_retry() -> Any:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return Retry(NoBackoff(), 0)

    def _spare(self) -> Any:
        """A new own connection (not yet connected), or None at the limit.

        Made with the client's settings, except that its connect and read
        timeouts are at most the store's ``timeout`` and it never retries:
        whatever the client, a call on an own connection is bounded.
        """
        with self._lock:
            if self._opened >= self._limit:
                return None
            self._opened += 1
        return self._factory(**self._settings)


class SyncRunner(_Runner):
    """Runs one-key scripts on a sync client."""

    __slots__ = ()

    def __call__(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        """Run ``call``; raise ``StoreUnavailable`` on any failure."""
        idle = self._idle
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._spare()
            if conn is None:
                return self._borrowed(call, key, now, cost)
        try:
            # _sock: redis-py 5.0's sync connections lack is_connected.  connect() itself,
            # not a send: Sentinel's connections resolve the master there.
            if conn._sock is None:
                conn.connect()
            try:
                conn.send_packed_command([call.evalsha(key, now, cost)])
                reply = conn.read_response(disable_decoding=True)
            except NoScriptError:  # SCRIPT FLUSH, restart, failover: EVAL caches it again
                conn.send_packed_command([call.eval(key, now, cost)])
                reply = conn.read_response(disable_decoding=True)
        except BaseException as exc:
            return self._failed(conn, exc)
        idle.append(conn)
        return reply

    def _failed(self, conn: Any, exc: BaseException) -> Any:
        """Close ``conn`` (its reply is in doubt: never resent, it may have run); raise.

        A redirect (``MOVED``, ``ASK``) was read whole and nothing else is
        pending: that connection is kept open.
        """
        try:
            if not isinstance(exc, AskError):  # MovedError is an AskError too
                with contextlib.suppress(Exception):  # the socket is being dropped either way
                    conn.disconnect()
            raise exc
        except Exception as error:
            raise unavailable(error, self.timeout) from error
        finally:
            self._idle.append(conn)  # disconnected: it reconnects on its next use

    def _borrowed(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        """The call on a connection from the client's pool (or through the client)."""
        try:
            pool = self._pool
            if pool is None:
                return self._via_client(call, key, now, cost)
            conn = pool.get_connection(*self._get_args)
            try:
                conn.send_packed_command([call.evalsha(key, now, cost)])
                try:
                    return conn.read_response(disable_decoding=True)
                except NoScriptError:
                    conn.send_packed_command([call.eval(key, now, cost)])
                    return conn.read_response(disable_decoding=True)
            except BaseException as exc:
                # Sentinel's connections do not disconnect on a read error: a pending
                # reply must never reach the next borrower (a redirect leaves none).
                if not isinstance(exc, AskError):
                    conn.disconnect()
                raise
            finally:
                pool.release(conn)
        except Exception as exc:  # whatever the client raises is an unavailable store
            raise unavailable(exc, self.timeout) from exc

    def _via_client(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        client = self._client
        args = (1, key, now, cost, *call.fixed)
        try:
            return client.execute_command("EVALSHA", call.script.sha, *args)
        except NoScriptError:
            return client.execute_command("EVAL", call.script.source, *args)

    def asked(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        """Run ``call`` right after ``ASKING``, on one connection: the target of an ``ASK``.

        Both commands go in one write; the ``ASKING`` reply is read, then the
        script's.  ``ASKING`` holds for one command only, so ``EVAL`` after
        ``NOSCRIPT`` is preceded by another.  Each read is bounded by the
        connection's timeout (at most ``timeout`` on own connections).
        """
        idle = self._idle
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._spare()
            if conn is None:
                return self._asked_borrowed(call, key, now, cost)
        try:
            reply = _asking(conn, call, key, now, cost)
        except BaseException as exc:
            return self._failed(conn, exc)
        idle.append(conn)
        return reply

    def _asked_borrowed(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        try:
            pool = self._pool
            if pool is None:
                raise StoreUnavailable("redis: ASKING needs a cluster node's connections")
            conn = pool.get_connection(*self._get_args)
            try:
                return _asking(conn, call, key, now, cost)
            except BaseException as exc:
                if not isinstance(exc, AskError):  # a redirect leaves no reply pending
                    conn.disconnect()
                raise
            finally:
                pool.release(conn)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise unavailable(exc, self.timeout) from exc

    def close(self) -> None:
        """Close the runner's own connections (a later call opens new ones)."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            with self._lock:
                self._opened -= 1
            with contextlib.suppress(Exception):  # a broken socket is closed all the same
                conn.disconnect()


class AsyncRunner(_Runner):
    """Runs one-key scripts on an asyncio client, never for longer than about ``timeout``."""

    __slots__ = ("_loop", "capped")

    def __init__(
        self, client: Any, timeout: float, connections: int = 0, *, source: Any = None
    ) -> None:
        super().__init__(client, timeout, connections, source=source)
        # A borrowed connection follows the client's settings: cap it unless they bound it.
        self.capped = not (self.uses_pool and bounded_by_client(client, timeout))
        self._loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def _no_retry() -> Any:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        return Retry(NoBackoff(), 0)

    def __call__(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Coroutine[Any, Any, Any]:
        """Run ``call``; raise ``StoreUnavailable`` on any failure or after ``timeout``."""
        return self._run(call, key, now, cost)

    async def _run(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        loop = _get_running_loop()
        if loop is not self._loop:
            self._adopt(loop)
        idle = self._idle
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._spare()
            if conn is None:
                if self.capped:
                    return await self._capped(call, key, now, cost)
                return await self._borrowed(call, key, now, cost)
        try:
            if not conn.is_connected:  # connect() itself: Sentinel's resolves the master there
                await conn.connect()
            # Straight to the transport: send_packed_command wraps every write in
            # asyncio.wait_for, a task per call (~20 us, a fifth of a loopback round
            # trip).  One small command per connection never waits for buffer space,
            # a lost connection shows on the read, and the read is bounded by the
            # connection's socket timeout (at most ``timeout``).
            writer = conn._writer
            writer.write(call.evalsha(key, now, cost))
            try:
                reply = await conn.read_response(disable_decoding=True)
            except NoScriptError:  # SCRIPT FLUSH, restart, failover: EVAL caches it again
                writer.write(call.eval(key, now, cost))
                reply = await conn.read_response(disable_decoding=True)
        except BaseException as exc:
            return await self._failed(conn, loop, exc)
        self._keep(conn, loop)
        return reply

    def _keep(self, conn: Any, loop: asyncio.AbstractEventLoop) -> None:
        if loop is self._loop:
            self._idle.append(conn)
        else:  # the store moved to another event loop meanwhile: this socket belongs to the old
            self._forget(conn)

    async def _failed(self, conn: Any, loop: asyncio.AbstractEventLoop, exc: BaseException) -> Any:
        """Close ``conn`` (its reply is in doubt: never resent, it may have run); raise.

        A redirect (``MOVED``, ``ASK``) was read whole and nothing else is
        pending: that connection is kept open.
        """
        try:
            if not isinstance(exc, AskError):  # MovedError is an AskError too
                await _disconnect(conn)
            raise exc
        except Exception as error:
            raise unavailable(error, self.timeout) from error
        finally:
            self._keep(conn, loop)

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop`` from now on: connections opened on another loop cannot serve it."""
        idle = self._idle
        while idle:
            self._forget(idle.pop())
        self._loop = loop

    def drop_idle(self) -> None:
        """Close the idle own connections without awaiting (a runner being replaced)."""
        idle = self._idle
        while idle:
            self._forget(idle.pop())

    def _forget(self, conn: Any) -> None:
        with self._lock:
            self._opened -= 1
        # No await: its loop may be closed, or not this one.  If closing fails,
        # the transport closes the socket when it is collected.
        with contextlib.suppress(Exception):
            writer = conn._writer
            conn._reader = conn._writer = None
            if writer is not None:
                writer.close()

    async def _capped(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        """A borrowed call under ``asyncio.timeout``: the client's own settings may not bound it."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._borrowed(call, key, now, cost)
        except TimeoutError as exc:
            raise unavailable(exc, self.timeout) from exc

    async def _borrowed(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        """The call on a connection from the client's pool (or through the client)."""
        try:
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
            except BaseException as exc:
                if not isinstance(exc, AskError):  # a pending reply must never reach the next
                    await _disconnect(conn)  # borrower (a redirect leaves none)
                raise
            finally:
                await pool.release(conn)
        except Exception as exc:  # whatever the client raises is an unavailable store
            raise unavailable(exc, self.timeout) from exc

    async def _via_client(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        client = self._client
        args = (1, key, now, cost, *call.fixed)
        try:
            return await client.execute_command("EVALSHA", call.script.sha, *args)
        except NoScriptError:
            return await client.execute_command("EVAL", call.script.source, *args)

    async def asked(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        """Run ``call`` right after ``ASKING``, on one connection: the target of an ``ASK``.

        As :meth:`SyncRunner.asked`.  Own connections bound each read by
        their socket timeout (at most ``timeout``); a borrowed one is capped
        with ``asyncio.timeout``.
        """
        loop = _get_running_loop()
        if loop is not self._loop:
            self._adopt(loop)
        idle = self._idle
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._spare()
            if conn is None:
                return await self._asked_borrowed(call, key, now, cost)
        try:
            reply = await _aasking(conn, call, key, now, cost)
        except BaseException as exc:
            return await self._failed(conn, loop, exc)
        self._keep(conn, loop)
        return reply

    async def _asked_borrowed(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        """On a connection of the client's pool, or of an asyncio cluster node."""
        pool = self._pool
        client = self._client
        try:
            async with asyncio.timeout(self.timeout):
                if pool is not None:
                    conn = await pool.get_connection(*self._get_args)
                elif callable(getattr(client, "acquire_connection", None)):
                    conn = client.acquire_connection()
                else:
                    raise StoreUnavailable("redis: ASKING needs a cluster node's connections")
                try:
                    return await _aasking(conn, call, key, now, cost)
                except BaseException as exc:
                    if not isinstance(exc, AskError):  # a redirect leaves no reply pending
                        await _disconnect(conn)
                    raise
                finally:
                    if pool is not None:
                        await pool.release(conn)
                    else:
                        client.release(conn)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise unavailable(exc, self.timeout) from exc

    async def aclose(self) -> None:
        """Close the runner's own connections (a later call opens new ones)."""
        loop = _get_running_loop()
        if loop is not self._loop:
            self._adopt(loop)  # another loop's sockets are closed without awaiting it
        idle = self._idle
        while idle:
            conn = idle.pop()
            with self._lock:
                self._opened -= 1
            with contextlib.suppress(Exception):  # a broken socket is closed all the same
                await conn.disconnect()


async def _disconnect(conn: Any) -> None:
    with contextlib.suppress(Exception):  # the socket is being dropped either way
        await conn.disconnect(nowait=True)


def _asking(conn: Any, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
    """``ASKING`` + ``EVALSHA`` in one write (``ASKING`` + ``EVAL`` after ``NOSCRIPT``)."""
    conn.send_packed_command([ASKING, call.evalsha(key, now, cost)])
    conn.read_response(disable_decoding=True)  # +OK
    try:
        return conn.read_response(disable_decoding=True)
    except NoScriptError:  # it did not run; ASKING held for that one command
        conn.send_packed_command([ASKING, call.eval(key, now, cost)])
        conn.read_response(disable_decoding=True)
        return conn.read_response(disable_decoding=True)


async def _aasking(conn: Any, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
    """The asyncio twin of :func:`_asking` (two lines of protocol, not a slow path)."""
    await conn.send_packed_command([ASKING, call.evalsha(key, now, cost)])
    await conn.read_response(disable_decoding=True)  # +OK
    try:
        return await conn.read_response(disable_decoding=True)
    except NoScriptError:
        await conn.send_packed_command([ASKING, call.eval(key, now, cost)])
        await conn.read_response(disable_decoding=True)
        return await conn.read_response(disable_decoding=True)
