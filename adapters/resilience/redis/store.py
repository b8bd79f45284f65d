"""``RedisStore``: rate-limit state shared by every process and host.

A store wraps a redis-py client (sync ``redis.Redis`` or asyncio
``redis.asyncio.Redis``; cluster and Sentinel-managed clients work the same
way) and hands each limiter a :class:`~resilience.redis.table.RedisTable`.
Sync decisions (``try_acquire``) need a sync client, async ones
(``atry_acquire``) an async client: pass one or both.  The async path never
blocks the event loop; the store never calls a sync client from it.

Time comes from the server (``clock="server"``: Redis ``TIME`` inside the
script), so hosts whose clocks disagree still share one timeline.
``clock="client"`` uses the ``now`` the limiter passes instead: for tests
with a fake clock, and for servers where scripts may not call ``TIME``.

``timeout`` bounds a decision.  The store's own connections have connect
and read timeouts of at most ``timeout`` and never retry.  A call that
overflows to the client's pool follows the client's settings, which bound it
when they are at most ``timeout`` without retries (:meth:`RedisStore.from_url`
builds such clients); otherwise an async call gets ``asyncio.timeout`` and,
since a sync call cannot be cut short from outside, the store warns.
"""

from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from resilience import _validate
from resilience.breaker.config import BreakerConfig
from resilience.ratelimit.algorithms.base import Algorithm, check_period
from resilience.redis._cluster import AsyncClusterRunner, SyncClusterRunner, is_cluster_client
from resilience.redis._runners import AsyncRunner, SyncRunner, timeout_problems
from resilience.redis.breaker import RedisBreakerStore, RedisBreakerTable
from resilience.redis.table import RedisTable

__all__ = ["RedisStore"]

ClockChoice = Literal["server", "client"]


def _is_async_client(client: object) -> bool:
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


def _check_client(client: object, field: str) -> None:
    if not callable(getattr(client, "execute_command", None)):
        raise TypeError(f"{field} must be a redis-py client, got {client!r}")


class RedisStore:
    """Rate-limit state in Redis or Valkey: one atomic Lua script per decision.

    ``client``: a ``redis.Redis`` or ``redis.asyncio.Redis`` (or cluster)
    client; ``async_client``: an asyncio client to pair with a sync
    ``client``.  ``key_prefix`` starts every key the store writes.
    ``clock``: ``"server"`` (Redis ``TIME``) or ``"client"`` (the limiter's
    clock).  ``timeout``: the longest a decision may take before it counts as
    a store failure.  ``ttl_margin``: seconds added to each key's expiry
    beyond the moment its state is full again.  ``max_key_length``: longer
    keys raise :class:`~resilience.errors.InvalidKey`, as in the memory store.
    ``connections``: how many connections per client the store opens and
    keeps for its own calls (with the client's settings), so that a decision
    skips redis-py's pool bookkeeping; when they are all busy a call borrows
    from the client's pool.  ``0`` borrows every call.
    """

    def __init__(
        self,
        client: Any,
        *,
        async_client: Any = None,
        key_prefix: str = "rl:",
        clock: ClockChoice = "server",
        timeout: float = 0.25,
        ttl_margin: float = 1.0,
        max_key_length: int = 1024,
        connections: int = 4,
    ) -> None:
        _check_client(client, "client")
        if _is_async_client(client):
            if async_client is not None:
                raise TypeError("client is already an asyncio client; pass a sync one as client")
            self.sync_client: Any = None
            self.async_client: Any = client
        else:
            self.sync_client = client
            self.async_client = None
            if async_client is not None:
                _check_client(async_client, "async_client")
                if not _is_async_client(async_client):
                    raise TypeError(
                        f"async_client must be a redis.asyncio client, got {async_client!r}"
                    )
                self.async_client = async_client
        if not isinstance(key_prefix, str) or "{" in key_prefix or "}" in key_prefix:
            raise ValueError(f"key_prefix must be a string without braces, got {key_prefix!r}")
        if clock not in ("server", "client"):
            raise ValueError(f"clock must be 'server' or 'client', got {clock!r}")
        _validate.non_negative_number(ttl_margin, "ttl_margin", unit="number of seconds")
        _validate.whole_number(max_key_length, "max_key_length")
        _validate.whole_number(connections, "connections", minimum=0)
        self.key_prefix = key_prefix
        self.clock: ClockChoice = clock
        self.timeout = check_period(timeout, "timeout")
        self.connections = connections
        self.run_sync: SyncRunner | SyncClusterRunner | None = None
        if self.sync_client is not None:
            sync_runner = SyncClusterRunner if is_cluster_client(self.sync_client) else SyncRunner
            self.run_sync = sync_runner(self.sync_client, self.timeout, connections)
        self.run_async: AsyncRunner | AsyncClusterRunner | None = None
        if self.async_client is not None:
            cluster = is_cluster_client(self.async_client)
            async_runner = AsyncClusterRunner if cluster else AsyncRunner
            self.run_async = async_runner(self.async_client, self.timeout, connections)
        self.ttl_margin = float(ttl_margin)
        self.max_key_length = max_key_length
        self.refund_errors = 0
        self._owned: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        if self.run_sync is not None:
            self._warn_if_unbounded(self.run_sync)

    def _warn_if_unbounded(self, runner: SyncRunner | SyncClusterRunner) -> None:
        if isinstance(runner, SyncClusterRunner):
            return  # own connections per node; overflow follows the nodes' settings (documented)
        if not runner.uses_pool and getattr(self.sync_client, "connection_pool", None) is None:
            return  # single-connection clients: settings not readable; documented instead
        problems = timeout_problems(self.sync_client, self.timeout)
        if problems:
            which = (
                "its sync decisions"
                if self.connections == 0 or not runner.uses_pool
                else f"sync decisions beyond its own {self.connections} connections, which "
                "borrow from the client's pool,"
            )
            warnings.warn(
                f"RedisStore(timeout={self.timeout}) cannot bound {which} because the client "
                f"has {', '.join(problems)}. Build it with RedisStore.from_url(url, "
                "timeout=...) or pass socket_timeout, socket_connect_timeout and "
                "retry=Retry(NoBackoff(), 0)",
                RuntimeWarning,
                stacklevel=3,
            )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = 0.25,
        key_prefix: str = "rl:",
        clock: ClockChoice = "server",
        ttl_margin: float = 1.0,
        max_key_length: int = 1024,
        connections: int = 4,
        **client_options: Any,
    ) -> RedisStore:
        """A store with a sync and an asyncio client for ``url``, both bounded by ``timeout``.

        Connect and read timeouts are ``timeout`` and redis-py's own retries are
        off: a decision is cheap to lose and the limiter's ``on_store_error``
        policy (or its ``fallback``) answers at once instead.  Extra keyword
        arguments go to both clients.  The asyncio client binds to the first
        event loop that uses it.  ``close()`` / ``aclose()`` release them.
        """
        import redis
        import redis.asyncio
        from redis.asyncio.retry import Retry as AsyncRetry
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        timeout = check_period(timeout, "timeout")
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            **client_options,
        }
        sync = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
        aio = redis.asyncio.Redis.from_url(url, retry=AsyncRetry(NoBackoff(), 0), **options)
        store = cls(
            sync,
            async_client=aio,
            key_prefix=key_prefix,
            clock=clock,
            timeout=timeout,
            ttl_margin=ttl_margin,
            max_key_length=max_key_length,
            connections=connections,
        )
        store._owned = [sync, aio]
        return store

    def table(self, algorithm: Algorithm, now: Callable[[], float], name: str = "") -> RedisTable:
        """A limiter's namespace: keys ``<key_prefix><name>:{<key>}:<kind>``."""
        return RedisTable(self, algorithm, now, name)

    def breaker_table(
        self, name: str, config: BreakerConfig, now: Callable[[], float]
    ) -> RedisBreakerTable:
        """Circuit-breaker state shared by every process (fail-open on outages).

        For another outage policy or expiry, pass ``RedisBreakerStore(store, ...)``
        to the breaker instead; see :mod:`resilience.redis.breaker`.
        """
        return RedisBreakerStore(self).breaker_table(name, config, now)

    @property
    def supports_async(self) -> bool:
        """Whether ``atry_acquire`` can decide: an asyncio client was given (middleware check)."""
        return self.run_async is not None

    def missing_client(self, kind: str) -> str:
        """The message for a decision on a path this store has no client for."""
        if kind == "sync":
            return (
                "RedisStore has only an asyncio client: use atry_acquire/aacquire, or pass a "
                "redis.Redis as client (and the asyncio one as async_client)"
            )
        return (
            "RedisStore has only a sync client: use try_acquire/acquire, or pass a "
            "redis.asyncio.Redis as async_client"
        )

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a best-effort async call in the background, keeping it referenced."""
        task = asyncio.ensure_future(self._quietly(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _quietly(self, coro: Coroutine[Any, Any, Any]) -> None:
        from resilience.errors import StoreError

        try:
            await coro
        except StoreError:
            self.refund_errors += 1

    def close(self) -> None:
        """Close the store's own sync connections and the sync client it created (``from_url``).

        A client you passed is yours to close.  The asyncio side needs ``aclose()``.
        """
        if self.run_sync is not None:
            self.run_sync.close()
        for client in self._owned:
            if not _is_async_client(client):
                client.close()

    async def aclose(self) -> None:
        """Close the store's own connections and both clients it created (``from_url``)."""
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)
        if self.run_sync is not None:
            self.run_sync.close()
        if self.run_async is not None:
            await self.run_async.aclose()
        for client in self._owned:
            if _is_async_client(client):
                await client.aclose()
            else:
                client.close()

    def __repr__(self) -> str:
        return (
            f"RedisStore(key_prefix={self.key_prefix!r}, clock={self.clock!r}, "
            f"timeout={self.timeout})"
        )
