"""A real Redis Cluster: 3 masters, 3 replicas, fresh clients under concurrency, a lost master.

Issue 9: with a fresh ``redis.asyncio.cluster.RedisCluster`` and 60 concurrent
``atry_acquire`` calls, a raw ``AttributeError`` ('NoneType' object has no
attribute 'writelines') left the limiter about one run in three.  Each test
here starts many fresh clients at once (threads or tasks behind a barrier),
spreads its keys over all three masters (checked against the cluster's own
slot map) and counts admissions exactly: no store error, no exception, no
decision lost or counted twice.  The failover test kills a master with
``SIGKILL`` mid-run and requires every call to come back within its bound,
answer by the outage policy during the gap, and decisions to resume on the
promoted replica by themselves.  The resharding tests migrate a limiter's
slot to another master mid-run (``SETSLOT IMPORTING/MIGRATING``, ``MIGRATE``,
``SETSLOT NODE``): decisions follow ``ASK`` during the migration and
``MOVED`` after it, with the state the key carried, and count exactly.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import pytest
import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot

from resilience import CircuitBreaker, CircuitOpen, CircuitState, FixedWindow, RateLimiter
from resilience.events import EventBus, StoreFailed
from resilience.redis import RedisStore
from resilience.redis.testing import RedisClusterNodes

pytestmark = [pytest.mark.redis, pytest.mark.slow]

LONG = 86_400.0
CLIENTS = 16  # fresh clients, one after another, each hit by TASKS calls at once
TASKS = 60
KEYS_PER_MASTER = 2
LIMIT = 7  # per key; each key gets TASKS / (3 * KEYS_PER_MASTER) = 10 calls
ROOMY = 2.0  # store timeout for exact counts on a loaded machine


def _keys_on_every_master(cluster: RedisClusterNodes, store: RedisStore, name: str) -> list[str]:
    """Client keys whose Redis keys land on each master, ``KEYS_PER_MASTER`` per master."""
    table = store.table(FixedWindow(LIMIT, LONG), lambda: 0.0, name)
    masters = cluster.master_ports()
    assert len(masters) == 3
    chosen: dict[int, list[str]] = {port: [] for port in masters}
    for index in range(10_000):
        key = f"user-{index}"
        owner = cluster.slot_owner(key_slot(table.redis_key(key)))
        if len(chosen[owner]) < KEYS_PER_MASTER:
            chosen[owner].append(key)
        if all(len(keys) == KEYS_PER_MASTER for keys in chosen.values()):
            break
    assert all(len(keys) == KEYS_PER_MASTER for keys in chosen.values()), chosen
    return [key for keys in chosen.values() for key in keys]


def _limiter(
    store: RedisStore, name: str, policy: str = "fail_open", limit: int = LIMIT
) -> RateLimiter:
    return RateLimiter(
        FixedWindow(limit, LONG),
        store=store,
        name=name,
        on_store_error=policy,  # type: ignore[arg-type]
        events=EventBus(),
    )


def _inexact(admitted: Counter[str], keys: list[str], limiter: RateLimiter) -> list[str]:
    """What differs from exactly ``LIMIT`` admissions per key and no store error."""
    assert TASKS // len(keys) > LIMIT
    problems = []
    if limiter.store_errors:
        problems.append(f"{limiter.name}: {limiter.store_errors} store errors")
    if dict(admitted) != dict.fromkeys(keys, LIMIT):
        problems.append(f"{limiter.name}: admitted {dict(admitted)}, expected {LIMIT} per key")
    return problems


async def _fresh_async_round(cluster: RedisClusterNodes, name: str) -> list[str]:
    """TASKS concurrent decisions on a fresh asyncio cluster client: what went wrong."""
    client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    store = RedisStore(client, timeout=ROOMY)
    limiter = _limiter(store, name)
    keys = _keys_on_every_master(cluster, store, name)
    barrier = asyncio.Barrier(TASKS)
    admitted: Counter[str] = Counter()

    async def call(index: int) -> None:
        key = keys[index % len(keys)]
        await barrier.wait()
        if (await limiter.atry_acquire(key)).allowed:
            admitted[key] += 1

    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(call(i) for i in range(TASKS)), return_exceptions=True), 30
        )
    finally:
        await store.aclose()
        await client.aclose()
    raised = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    return raised + _inexact(admitted, keys, limiter)


async def test_fresh_async_clients_under_concurrency_admit_exactly(
    redis_cluster: RedisClusterNodes,
) -> None:
    """The issue's reproduction, many times over: no exception, exact counts on every master."""
    problems: list[str] = []
    for round_ in range(CLIENTS):
        problems += await _fresh_async_round(redis_cluster, f"async-fresh-{round_}")
    assert problems == []


def _fresh_sync_round(cluster: RedisClusterNodes, name: str, threads: int) -> list[str]:
    """TASKS decisions from ``threads`` threads on a fresh sync cluster client."""
    client = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    store = RedisStore(client, timeout=ROOMY)
    limiter = _limiter(store, name)
    keys = _keys_on_every_master(cluster, store, name)
    barrier = threading.Barrier(threads, timeout=30)
    admitted: Counter[str] = Counter()
    raised: list[str] = []
    lock = threading.Lock()
    per_thread = -(-TASKS // threads)

    def worker(index: int) -> None:
        try:
            barrier.wait()
            for number in range(index * per_thread, min(TASKS, (index + 1) * per_thread)):
                key = keys[number % len(keys)]
                if limiter.try_acquire(key).allowed:
                    with lock:
                        admitted[key] += 1
        except BaseException as exc:  # collected: a raw error must fail the test
            raised.append(f"{type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    try:
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(30)
        assert not any(thread.is_alive() for thread in workers)
    finally:
        store.close()
        client.close()
    return raised + _inexact(admitted, keys, limiter)


def test_fresh_sync_clients_under_thread_concurrency_admit_exactly(
    redis_cluster: RedisClusterNodes,
) -> None:
    problems: list[str] = []
    for round_ in range(4):
        problems += _fresh_sync_round(redis_cluster, f"sync-fresh-{round_}", threads=24)
    assert problems == []


# -- a master killed mid-run -------------------------------------------------------------------

TIMEOUT = 0.25
BOUND = 2 * TIMEOUT + 0.5  # a first call loads the slot map, then runs; room for a loaded CI
RESUMED = 20  # consecutive answered calls on the lost master's key after its replica took over


def _key_on(cluster: RedisClusterNodes, store: RedisStore, name: str, port: int) -> str:
    table = store.table(FixedWindow(LIMIT, LONG), lambda: 0.0, name)
    for index in range(10_000):
        key = f"client-{index}"
        if cluster.slot_owner(key_slot(table.redis_key(key))) == port:
            return key
    raise AssertionError(f"no key on {port}")


class Recorder:
    """Times each decision on one key and classifies it by the limiter's error count."""

    def __init__(self, limiter: RateLimiter, key: str, failures: list[str]) -> None:
        self.limiter = limiter
        self.key = key
        self.failures = failures  # the store errors, as the limiter reported them
        self.slowest = 0.0
        self.errors = 0
        self.streak = 0  # consecutive decisions answered by Redis
        self.messages: list[str] = []

    async def decide(self, sync: bool) -> None:
        limiter = self.limiter
        before = limiter.store_errors
        started = time.monotonic()
        if sync:
            decision = limiter.try_acquire(self.key)
        else:
            decision = await limiter.atry_acquire(self.key)
        self.slowest = max(self.slowest, time.monotonic() - started)
        if limiter.store_errors == before:
            self.streak += 1
            assert decision.allowed  # the limit is never reached: Redis admits
            return
        self.errors += 1
        self.streak = 0
        assert self.failures, "a store error without a StoreFailed event"
        self.messages.append(self.failures[-1])
        # The outage policy answered: fail_open admits, fail_closed refuses.
        if limiter.on_store_error == "fail_open":
            assert decision.allowed
        else:
            assert not decision.allowed
            assert decision.retry_after == limiter.store_error_retry_after


@pytest.mark.parametrize(("mode", "policy"), [("async", "fail_closed"), ("sync", "fail_open")])
async def test_master_killed_mid_run_decisions_resume_on_the_promoted_replica_and_back(
    fresh_redis_cluster: RedisClusterNodes, mode: str, policy: str
) -> None:
    cluster = fresh_redis_cluster
    options = {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT}
    port = cluster.ports[0]
    sync = mode == "sync"
    client: Any = (
        redis.cluster.RedisCluster(host="127.0.0.1", port=port, **options)
        if sync
        else redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=port, **options)
    )
    store = RedisStore(client, timeout=TIMEOUT)
    name = f"failover-{mode}"
    failures: list[str] = []
    limiter = RateLimiter(
        FixedWindow(10**9, LONG),
        store=store,
        name=name,
        on_store_error=policy,  # type: ignore[arg-type]
        events=EventBus([lambda event: failures.append(getattr(event, "error", repr(event)))]),
    )
    victim, survivor = cluster.master_ports()[:2]
    lost = Recorder(limiter, _key_on(cluster, store, name, victim), failures)
    kept = Recorder(limiter, _key_on(cluster, store, name, survivor), failures)
    slot = key_slot(store.table(limiter.algorithm, lambda: 0.0, name).redis_key(lost.key))
    deadline = time.monotonic() + 45
    try:
        for step in range(5_000):  # bounded in count and in time
            if step == 20:
                assert lost.errors == 0 and kept.errors == 0
                cluster.kill(victim)  # SIGKILL: its replica is promoted after node_timeout
            await lost.decide(sync)
            await kept.decide(sync)
            if lost.errors and lost.streak >= RESUMED:
                break
            assert time.monotonic() < deadline, "decisions did not resume after the failover"
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("bounded loop ran out")
        assert lost.errors > 0  # the gap was seen, and answered by the policy
        assert cluster.slot_owner(slot) != victim  # answered by the promoted replica
        # The other masters answer too, except while the cluster reports a slot without a
        # master (cluster-require-full-coverage yes, the default): then every node refuses.
        assert all("ClusterDownError" in message for message in kept.messages), kept.messages
        assert lost.slowest <= BOUND and kept.slowest <= BOUND

        # Failback: the crashed node rejoins as a replica and takes its slots back
        # (CLUSTER FAILOVER); decisions follow the slot to it by themselves.
        cluster.restart(victim)
        cluster.failover(victim)
        assert cluster.slot_owner(slot) == victim
        lost.streak = 0
        for _ in range(2_000):
            await lost.decide(sync)
            await kept.decide(sync)
            if lost.streak >= RESUMED:
                break
            assert time.monotonic() < deadline + 60, "decisions did not follow the failback"
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("bounded loop ran out")
        assert lost.slowest <= BOUND and kept.slowest <= BOUND
        runner = store.run_sync if sync else store.run_async
        assert runner is not None
        assert runner.idle_connections <= store.connections * len(cluster.ports)
    finally:
        if sync:
            store.close()
            client.close()
        else:
            await store.aclose()
            await client.aclose()


async def test_breaker_state_is_shared_through_the_cluster(
    redis_cluster: RedisClusterNodes,
) -> None:
    """Two stores on fresh clients see one circuit: opened by one, closed by the other."""
    port = redis_cluster.ports[0]
    sync = redis.cluster.RedisCluster(host="127.0.0.1", port=port)
    aio = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=port)
    mine = RedisStore(aio, timeout=ROOMY)
    theirs = RedisStore(sync, timeout=ROOMY)
    one = CircuitBreaker("cluster-breaker", consecutive_failures=3, store=mine)
    other = CircuitBreaker("cluster-breaker", consecutive_failures=3, store=theirs)

    async def fail() -> None:
        raise ConnectionError("dependency down")

    try:
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await one.acall(fail)
        assert other.state is CircuitState.OPEN
        with pytest.raises(CircuitOpen):
            other.call(lambda: None)
        other.force_closed()
        assert await one.astate() is CircuitState.CLOSED
    finally:
        theirs.close()
        await mine.aclose()
        sync.close()
        await aio.aclose()


# -- a slot migrated mid-run (resharding): ASK ---------------------------------------------------

MIGRATING_LIMIT = 9


def _same_slot_keys(store: RedisStore, name: str, count: int) -> list[str]:
    """``count`` client keys whose Redis keys share one slot (bounded search)."""
    table = store.table(FixedWindow(MIGRATING_LIMIT, 2.0**40), lambda: 0.0, name)
    slot = key_slot(table.redis_key("tenant-0"))
    keys: list[str] = []
    for index in range(2_000_000):
        if len(keys) == count:
            return keys
        key = f"tenant-{index}"
        if key_slot(table.redis_key(key)) == slot:
            keys.append(key)
    raise AssertionError("no keys sharing a slot")


class Admin:
    """Resharding one slot by hand, as ``redis-cli --cluster reshard`` does."""

    def __init__(self, cluster: RedisClusterNodes) -> None:
        self.cluster = cluster
        self.clients = {
            port: redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=5)
            for port in cluster.master_ports()
        }
        self.ids = {
            port: client.execute_command("CLUSTER MYID") for port, client in self.clients.items()
        }

    def begin(self, slot: int, source: int, target: int) -> None:
        assert self.clients[target].execute_command(
            "CLUSTER SETSLOT", slot, "IMPORTING", self.ids[source]
        )
        assert self.clients[source].execute_command(
            "CLUSTER SETSLOT", slot, "MIGRATING", self.ids[target]
        )

    def migrate(self, key: bytes, source: int, target: int) -> None:
        reply = self.clients[source].execute_command("MIGRATE", "127.0.0.1", target, key, 0, 5000)
        assert reply == "OK", reply

    def end(self, slot: int, target: int) -> None:
        """``SETSLOT NODE`` on the target first, then on every other master."""
        order = [target, *(port for port in self.clients if port != target)]
        for port in order:
            assert self.clients[port].execute_command(
                "CLUSTER SETSLOT", slot, "NODE", self.ids[target]
            )

    def keys_in_slot(self, port: int, slot: int) -> int:
        return int(self.clients[port].execute_command("CLUSTER COUNTKEYSINSLOT", slot))

    def asking_calls(self, port: int) -> int:
        stats = self.clients[port].info("commandstats").get("cmdstat_asking", {})
        return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0

    def connections_received(self, port: int) -> int:
        return int(self.clients[port].info("stats")["total_connections_received"])

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def _store_failed(event: object, failures: list[str]) -> None:
    if isinstance(event, StoreFailed):
        failures.append(event.error)


@pytest.mark.parametrize(
    ("mode", "connections"), [("sync", 4), ("async", 4), ("sync", 0), ("async", 0)]
)
async def test_a_slot_migrated_mid_run_follows_ask_then_moved_and_counts_exactly(
    fresh_redis_cluster: RedisClusterNodes, mode: str, connections: int
) -> None:
    """Resharding one slot mid-run: every decision is answered by Redis, with the moved state.

    Three client keys share one slot.  ``moved`` has state on the source and
    is migrated first; ``staying`` has state on the source and stays there
    while ``moved`` is decided through ``ASK``; ``newcomer`` gets its first
    decision during the migration (no key anywhere: the source answers
    ``ASK`` and the target creates it).  Then ``staying`` moves too, the
    migration ends (``SETSLOT NODE``) and decisions follow ``MOVED``.  A
    ``FixedWindow`` whose window never ends admits exactly its limit per key
    across all of it: any decision taken on a copy of the state, or
    answered by the outage policy, breaks the count.  ``connections=0``
    sends every call on a connection borrowed from the cluster client's
    node (its pool, or the asyncio node's own connections).
    """
    cluster = fresh_redis_cluster
    sync = mode == "sync"
    port = cluster.ports[0]
    client: Any = (
        redis.cluster.RedisCluster(host="127.0.0.1", port=port)
        if sync
        else redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=port)
    )
    store = RedisStore(client, timeout=ROOMY, connections=connections)
    name = f"reshard-{mode}"
    failures: list[str] = []
    limiter = RateLimiter(
        FixedWindow(MIGRATING_LIMIT, 2.0**40),
        store=store,
        name=name,
        on_store_error="fail_closed",
        events=EventBus([lambda event: _store_failed(event, failures)]),
    )
    table = store.table(limiter.algorithm, lambda: 0.0, name)
    moved, staying, newcomer = _same_slot_keys(store, name, 3)
    slot = key_slot(table.redis_key(moved))
    source = cluster.slot_owner(slot)
    target = next(p for p in cluster.master_ports() if p != source)
    admin = Admin(cluster)
    admitted: Counter[str] = Counter()

    async def decide(key: str, times: int) -> None:
        for _ in range(times):
            if sync:
                decision = limiter.try_acquire(key)
            else:
                decision = await limiter.atry_acquire(key)
            admitted[key] += decision.allowed

    def owner_in_client_map() -> int:
        return int(client.nodes_manager.slots_cache[slot][0].port)

    try:
        await decide(moved, 2)
        await decide(staying, 2)
        assert owner_in_client_map() == source
        asking_before = admin.asking_calls(target)

        admin.begin(slot, source, target)
        await decide(moved, 1)  # its key is still on the source: decided there
        await decide(staying, 1)
        assert admin.asking_calls(target) == asking_before

        admin.migrate(table.redis_key(moved), source, target)
        assert admin.keys_in_slot(source, slot) == 1 and admin.keys_in_slot(target, slot) == 1
        connections_before = admin.connections_received(source)
        await decide(moved, 3)  # ASK: on the target, with the state the key carried
        await decide(staying, 2)  # not moved: still the source's
        await decide(newcomer, 4)  # no key yet: ASK, created on the target
        assert admitted == {moved: 6, staying: 5, newcomer: 4}
        assert admin.keys_in_slot(source, slot) == 1 and admin.keys_in_slot(target, slot) == 2
        # One ASKING per redirected decision, and one more for the first: the target had
        # never run the script, so EVAL follows NOSCRIPT, after an ASKING of its own.
        assert admin.asking_calls(target) - asking_before == 3 + 4 + 1
        assert owner_in_client_map() == source  # ASK leaves the slot map alone
        # An ASK reply is a whole reply: the source's connection stays open for the next call.
        assert admin.connections_received(source) == connections_before

        admin.migrate(table.redis_key(staying), source, target)
        await decide(staying, 2)
        await decide(moved, 2)
        assert admin.keys_in_slot(source, slot) == 0 and admin.keys_in_slot(target, slot) == 3

        admin.end(slot, target)  # the target owns the slot: the source answers MOVED
        assert cluster.slot_owner(slot, source) == target
        await decide(moved, 4)
        await decide(staying, 4)
        await decide(newcomer, 8)
        deadline = time.monotonic() + 10
        for _ in range(1_000):  # the map refresh MOVED started runs in the background
            if owner_in_client_map() == target:
                break
            assert time.monotonic() < deadline, "the slot map never learned the new owner"
            await asyncio.sleep(0.01)
        asked_before_end = admin.asking_calls(target)
        await decide(moved, 1)  # straight to the new owner: no redirect at all
        assert admin.asking_calls(target) == asked_before_end

        assert failures == [] and limiter.store_errors == 0
        assert admitted == dict.fromkeys((moved, staying, newcomer), MIGRATING_LIMIT)
    finally:
        admin.close()
        if sync:
            store.close()
            client.close()
        else:
            await store.aclose()
            await client.aclose()


IN_FLIGHT_LIMIT = 70
IN_FLIGHT_WORKERS = 8
AT_LEAST = 15  # decisions per worker, so that the limit is reached (8 x 15 > 70)
AFTER = 5  # decisions per worker once the migration has ended


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_decisions_in_flight_while_the_key_migrates_admit_exactly(
    fresh_redis_cluster: RedisClusterNodes, mode: str
) -> None:
    """Concurrent decisions on one key while another thread reshards its slot, start to end.

    Threads (or tasks) behind a barrier decide on one key while a migrator
    thread marks the slot, ``MIGRATE``s the key, waits until decisions have
    followed ``ASK`` to the target and ends the migration: each decision
    lands before (the source), during (the source, or ``ASK``) or after
    (``MOVED``).  The limit is admitted exactly and no decision gets the
    outage policy.
    """
    cluster = fresh_redis_cluster
    sync = mode == "sync"
    port = cluster.ports[0]
    client: Any = (
        redis.cluster.RedisCluster(host="127.0.0.1", port=port)
        if sync
        else redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=port)
    )
    store = RedisStore(client, timeout=ROOMY)
    name = f"in-flight-{mode}"
    limiter = RateLimiter(
        FixedWindow(IN_FLIGHT_LIMIT, 2.0**40),
        store=store,
        name=name,
        on_store_error="fail_closed",
        events=EventBus(),
    )
    table = store.table(limiter.algorithm, lambda: 0.0, name)
    (key,) = _same_slot_keys(store, name, 1)
    redis_key = table.redis_key(key)
    slot = key_slot(redis_key)
    source = cluster.slot_owner(slot)
    target = next(p for p in cluster.master_ports() if p != source)
    admin = Admin(cluster)
    asking_before = admin.asking_calls(target)
    started = threading.Event()
    ended = threading.Event()
    deadline = time.monotonic() + 45

    def migrator() -> None:
        try:
            started.wait(30)
            admin.begin(slot, source, target)
            admin.migrate(redis_key, source, target)
            while admin.asking_calls(target) < asking_before + 3:  # some decisions asked
                if time.monotonic() > deadline:
                    break  # then the counts below fail the test
                time.sleep(0.005)
            admin.end(slot, target)
        finally:
            ended.set()

    def more(number: int, ended_at: int | None) -> bool:
        """Whether a worker goes on: bounded in count and in time."""
        if number < AT_LEAST or ended_at is None or number < ended_at + AFTER:
            return number < 5_000 and time.monotonic() < deadline
        return False

    totals = Counter[str]()
    mover = threading.Thread(target=migrator, daemon=True)
    mover.start()
    try:
        if sync:
            lock = threading.Lock()
            barrier = threading.Barrier(IN_FLIGHT_WORKERS, timeout=30)
            raised: list[BaseException] = []

            def worker() -> None:
                try:
                    barrier.wait()
                    number, ended_at = 0, None
                    while more(number, ended_at):
                        if number == 3:
                            started.set()
                        if ended_at is None and ended.is_set():
                            ended_at = number
                        allowed = limiter.try_acquire(key).allowed
                        with lock:
                            totals["decided"] += 1
                            totals["admitted"] += allowed
                        number += 1
                        time.sleep(0.002)
                except BaseException as exc:  # collected: a raw error must fail the test
                    raised.append(exc)

            threads = [
                threading.Thread(target=worker, daemon=True) for _ in range(IN_FLIGHT_WORKERS)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert not any(thread.is_alive() for thread in threads)
            assert raised == []
        else:
            gate = asyncio.Barrier(IN_FLIGHT_WORKERS)

            async def task() -> None:
                await gate.wait()
                number, ended_at = 0, None
                while more(number, ended_at):
                    if number == 3:
                        started.set()
                    if ended_at is None and ended.is_set():
                        ended_at = number
                    allowed = (await limiter.atry_acquire(key)).allowed  # then count: no
                    totals["admitted"] += allowed  # read of the total across the await
                    totals["decided"] += 1
                    number += 1
                    await asyncio.sleep(0.002)

            tasks = (task() for _ in range(IN_FLIGHT_WORKERS))
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
        mover.join(30)
        assert ended.is_set() and time.monotonic() < deadline
        assert cluster.slot_owner(slot, source) == target
        assert admin.keys_in_slot(target, slot) == 1
        assert admin.asking_calls(target) >= asking_before + 3  # decisions followed ASK
        assert limiter.store_errors == 0
        assert totals["decided"] > IN_FLIGHT_LIMIT
        assert totals["admitted"] == IN_FLIGHT_LIMIT
    finally:
        started.set()
        mover.join(30)
        admin.close()
        if sync:
            store.close()
            client.close()
        else:
            await store.aclose()
            await client.aclose()
