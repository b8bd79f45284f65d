"""Redis Cluster: each decision goes straight to the master of its key's slot.

A cluster client's ``execute_command`` is not safe to share between many
concurrent decisions on a fresh asyncio client: calls that start before the
client has loaded the slot map are sent to an arbitrary node, get ``MOVED``,
and every fifth ``MOVED`` makes redis-py close *all* the client's
connections, including those other calls are writing to or reading from at
that moment.  Those calls then fail with a raw ``AttributeError``
(``'NoneType' object has no attribute 'writelines'``) or lose their reply,
and redis-py's own retry may run the script a second time.  Cancelling a
call (the store's timeout) while it loads the slot map closes every
connection the same way.

So the store routes a decision itself: the slot of its key (the ``{...}``
hash tag the table always writes) names the master in the client's slot map,
and a per-node runner (the same own-connection runner as for one server,
:mod:`resilience.redis._runners`) sends the ``EVALSHA`` on a connection of its
own, bounded by the store's ``timeout``.  The client is used only for its
topology: loaded once (``initialize()``, which concurrent first calls share
and never cancel), and refreshed in the background after a failure
(``MOVED``, a dead or demoted master), at most one refresh at a time and
one per :data:`REFRESH_INTERVAL`.  A ``MOVED`` reply means the script did not
run, so that one call is sent again to the node it names, and the map is
refreshed.  During resharding the source of a migrating slot answers ``ASK``
for a key it no longer holds (the script did not run either): that one call
is sent again, right after ``ASKING`` on the same connection, to the node
importing the slot, and the map is left alone (the source owns the slot until
``CLUSTER SETSLOT ... NODE`` ends the migration; then ``MOVED`` takes over).
A decision follows at most one redirect.  Any other failure (``TRYAGAIN``
included; a decision touches one key) raises
:class:`~resilience.errors.StoreUnavailable` (never resent: the script may
have run) and the limiter's ``on_store_error`` answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Coroutine
from typing import Any

from redis.crc import key_slot
from redis.exceptions import AskError, MovedError
from resilience.errors import StoreUnavailable
from resilience.redis._runners import AsyncRunner, SyncRunner, unavailable
from resilience.redis._scripts import Call

__all__ = ["REFRESH_INTERVAL", "AsyncClusterRunner", "SyncClusterRunner", "is_cluster_client"]

REFRESH_INTERVAL = 0.1
"""Seconds between two topology refreshes started by failures (a failover takes seconds)."""


def is_cluster_client(client: object) -> bool:
    """True for ``redis.cluster.RedisCluster`` and ``redis.asyncio.cluster.RedisCluster``."""
    manager = getattr(client, "nodes_manager", None)
    return manager is not None and isinstance(getattr(manager, "slots_cache", None), dict)


def _redirect(exc: StoreUnavailable) -> tuple[str | None, bool]:
    """The node a ``MOVED`` or ``ASK`` reply names (None for other failures); True for ``ASK``.

    Either reply means the script did not run on the node that sent it.
    """
    cause = exc.__cause__
    if isinstance(cause, AskError):  # MovedError is an AskError too
        return f"{cause.host}:{cause.port}", not isinstance(cause, MovedError)
    return None, False


class _Router:
    """The slot map lookups and refresh pacing shared by the sync and async runners."""

    __slots__ = ("_client", "_connections", "_last_refresh", "_lock", "_nodes", "timeout")

    def __init__(self, client: Any, timeout: float, connections: int) -> None:
        self._client = client
        self.timeout = timeout
        self._connections = connections
        self._nodes: dict[str, tuple[Any, Any]] = {}  # node name -> (its pool, its runner)
        self._last_refresh = -REFRESH_INTERVAL
        self._lock = threading.Lock()

    @property
    def uses_pool(self) -> bool:
        return True

    @property
    def idle_connections(self) -> int:
        """Own connections open and waiting for a call, over all nodes."""
        return sum(runner.idle_connections for _, runner in list(self._nodes.values()))

    def _master(self, key: bytes) -> Any:
        """The master serving ``key``'s slot in the client's slot map, or None."""
        nodes = self._client.nodes_manager.slots_cache.get(key_slot(key))
        return nodes[0] if nodes else None

    def _named(self, name: str) -> Any:
        return self._client.nodes_manager.nodes_cache.get(name)

    def _runner(self, node: Any) -> Any:
        """The runner for ``node``: one per node connection pool of the client's map.

        A node that left the map and came back (a crashed master rejoining)
        gets a new pool under the same name: its runner is replaced, so that
        calls overflowing to the node's pool use the pool the client knows and
        closes.
        """
        pool = self._pool_of(node)
        pair = self._nodes.get(node.name)
        if pair is not None and pair[0] is pool:
            return pair[1]
        with self._lock:
            pair = self._nodes.get(node.name)
            if pair is not None and pair[0] is pool:
                return pair[1]
            runner = self._make(node)
            self._nodes[node.name] = (pool, runner)
        if pair is not None:
            self._retire(pair[1])
        return runner

    def _make(self, node: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def _pool_of(node: Any) -> Any:
        """What holds the node's connections in the client (it outlives map refreshes)."""
        return node

    def _retire(self, runner: Any) -> None:
        raise NotImplementedError

    def _due(self) -> bool:
        """Claim the next refresh if none ran within ``REFRESH_INTERVAL``."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_refresh < REFRESH_INTERVAL:
                return False
            self._last_refresh = now
            return True

    def _no_master(self, key: bytes) -> StoreUnavailable:
        return StoreUnavailable(
            f"redis cluster: no known master for slot {key_slot(key)} (refreshing the slot map)"
        )


class SyncClusterRunner(_Router):
    """Runs one-key scripts on a ``redis.cluster.RedisCluster``'s masters, thread-safe."""

    __slots__ = ("_refreshing",)

    def __init__(self, client: Any, timeout: float, connections: int = 0) -> None:
        super().__init__(client, timeout, connections)
        self._refreshing = 0  # the pid whose thread is refreshing (a forked child's is stale)

    def _make(self, node: Any) -> SyncRunner:
        return SyncRunner(node.redis_connection, self.timeout, self._connections)

    @staticmethod
    def _pool_of(node: Any) -> Any:
        # redis-py's sync client makes new node objects on every refresh, with the old
        # node's ``redis_connection`` (its pool) carried over.
        return node.redis_connection

    def _retire(self, runner: Any) -> None:
        runner.close()

    def __call__(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        """Run ``call`` on the master of ``key``'s slot; raise ``StoreUnavailable`` on failure."""
        try:
            node = self._master(key)
        except Exception as exc:  # a client in an unexpected state
            raise unavailable(exc, self.timeout) from exc
        if node is None or getattr(node, "redis_connection", None) is None:
            self._refresh_soon()
            raise self._no_master(key)
        try:
            return self._runner(node)(call, key, now, cost)
        except StoreUnavailable as exc:
            name, ask = _redirect(exc)
            if not ask:
                self._refresh_soon()  # MOVED, or a failure: the map may be stale
            target = None if name is None else self._named(name)
            if target is None or getattr(target, "redis_connection", None) is None:
                raise
            if not ask:
                return self._runner(target)(call, key, now, cost)
            try:  # ASK: the slot is being migrated; this one call, the map unchanged
                return self._runner(target).asked(call, key, now, cost)
            except StoreUnavailable:
                self._refresh_soon()
                raise

    def _refresh_soon(self) -> None:
        """Reload the slot map in a background thread: no call waits for it."""
        pid = os.getpid()
        if self._refreshing == pid or not self._due():
            return
        self._refreshing = pid
        threading.Thread(target=self._refresh, name="resilience-redis-cluster", daemon=True).start()

    def _refresh(self) -> None:
        try:
            self._client.nodes_manager.initialize()
        except Exception:  # the next failure schedules another
            pass
        finally:
            self._refreshing = 0

    def close(self) -> None:
        """Close the own connections of every node's runner."""
        for _, runner in list(self._nodes.values()):
            runner.close()


class AsyncClusterRunner(_Router):
    """Runs one-key scripts on a ``redis.asyncio.cluster.RedisCluster``'s masters."""

    __slots__ = ("_loading", "_refreshing")

    capped = False  # every call runs on a node runner, which bounds it

    def __init__(self, client: Any, timeout: float, connections: int = 0) -> None:
        super().__init__(client, timeout, connections)
        self._loading: asyncio.Task[Any] | None = None  # the first load of the slot map
        self._refreshing: asyncio.Task[Any] | None = None

    def _make(self, node: Any) -> AsyncRunner:
        return AsyncRunner(node, self.timeout, self._connections, source=node)

    # The asyncio client keeps a node object (which holds its connections) across refreshes.

    def _retire(self, runner: Any) -> None:
        runner.drop_idle()

    def __call__(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Coroutine[Any, Any, Any]:
        """Run ``call`` on the master of ``key``'s slot; raise ``StoreUnavailable`` on failure."""
        return self._run(call, key, now, cost)

    async def _run(self, call: Call, key: bytes, now: bytes, cost: bytes) -> Any:
        try:
            node = self._master(key)
        except Exception as exc:
            raise unavailable(exc, self.timeout) from exc
        if node is None:
            node = await self._loaded(key)
        try:
            return await self._runner(node)(call, key, now, cost)
        except StoreUnavailable as exc:
            name, ask = _redirect(exc)
            if not ask:
                self._refresh_soon()  # MOVED, or a failure: the map may be stale
            target = None if name is None else self._named(name)
            if target is None:
                raise
            if not ask:
                return await self._runner(target)(call, key, now, cost)
            try:  # ASK: the slot is being migrated; this one call, the map unchanged
                return await self._runner(target).asked(call, key, now, cost)
            except StoreUnavailable:
                self._refresh_soon()
                raise

    async def _loaded(self, key: bytes) -> Any:
        """Wait (at most ``timeout``) for the client's first load of the slot map.

        Every call that finds the map empty waits for the same task, which no
        caller cancels: redis-py closes all the client's connections when its
        ``initialize()`` is interrupted.
        """
        loop = asyncio.get_running_loop()
        task = self._loading
        if task is None or task.get_loop() is not loop or (task.done() and self._due()):
            task = self._loading = loop.create_task(self._client.initialize())
        try:
            done, _ = await asyncio.wait((task,), timeout=self.timeout)
            if not done:
                raise StoreUnavailable(
                    f"redis cluster: slot map not loaded within timeout={self.timeout}s"
                )
            task.result()
            node = self._master(key)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise unavailable(exc, self.timeout) from exc
        if node is None:
            self._refresh_soon()
            raise self._no_master(key)
        return node

    def _refresh_soon(self) -> None:
        """Reload the slot map in a background task: no call waits for it."""
        task = self._refreshing
        loop = asyncio.get_running_loop()
        running = task is not None and not task.done() and task.get_loop() is loop
        if running or not self._due():
            return
        loading = self._loading
        if loading is not None and not loading.done() and loading.get_loop() is loop:
            return  # the first load is still running: it reads the map anyway
        self._refreshing = loop.create_task(self._refresh())

    async def _refresh(self) -> None:
        with contextlib.suppress(Exception):  # the next failure schedules another
            await self._client.nodes_manager.initialize()

    def close(self) -> None:
        """Nothing to do synchronously: asyncio connections close in ``aclose()``."""

    async def aclose(self) -> None:
        """Close every node runner's own connections; stop a refresh under way."""
        for task in (self._refreshing, self._loading):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._refreshing = None
        for _, runner in list(self._nodes.values()):
            await runner.aclose()
