"""Redis decisions as a ratio to a redis-py PING, sync and async, against limits.

"Bare" for Redis is one round trip that does nothing: ``client.ping()`` on
the same client.  Each row times ``CALLS`` PINGs and ``CALLS`` decisions one
call at a time, interleaved (PING then decision, then decision then PING):
on a shared, virtualised machine a loopback round trip costs 60-140 us and
jumps with scheduling and vCPU wake-ups, so only PINGs timed right next to
the decisions make a fair baseline, and blocks of calls (our first method)
let a burst of load land on one side.  ``ratio_to_bare`` is the median
decision over the median PING; ``ratio_p25`` compares the first quartiles
(the undisturbed calls); ``ratio_per_half`` is the ratio over the first and
second half of the run, to show how stable it is.  A decision is one script
call, so the bar of DESIGN.md section 5 is <= 1.2 x PING for every
algorithm.  One more row runs GCRA with ``connections=0`` (every call
borrows from redis-py's pool, the store's behaviour before it kept its own
connections).  The peers are limits' Redis strategies (fixed window, moving
window, sliding window counter) on the same server.

Every limiter is configured to stay on the allowed path (a limit no run can
reach); the sliding log uses a 10 ms window so that its list stays in steady
state (one entry out per entry in).  The server is a throwaway
``redis-server`` on a free 127.0.0.1 port, or ``$REDIS_URL`` when set.

Two more tables run the same decisions on a throwaway Redis Cluster (3
masters, 3 replicas: ``RedisClusterNodes``, needs ``redis-cli``) against a
PING sent through the cluster client to the master of the benchmarked key
(``client.ping(target_nodes=node)``), with redis-py's own ``EVALSHA``
through the cluster client as the peer.

The last table is the memory Redis reports (``MEMORY USAGE``) for one key of
each algorithm, as quoted in ``docs/redis.md``.

``python -m benchmarks.bench_redis`` runs this module alone.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from resilience.events import EventBus
from resilience.ratelimit.algorithms import (
    GCRA,
    Algorithm,
    FixedWindow,
    LeakyBucket,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from resilience.ratelimit.limiter import RateLimiter

__all__ = ["run"]

Row = dict[str, Any]
BAR = 1.2
TIMEOUT = 0.25
BIG = 10**9
HUGE_PERIOD = 10.0**12
KEY = "bench-key"
CALLS = 3_000  # PINGs and decisions, interleaved one by one
WARMUP = 200
_perf_ns = time.perf_counter_ns


def algorithms() -> list[tuple[str, Algorithm]]:
    return [
        ("TokenBucket", TokenBucket(BIG, HUGE_PERIOD)),
        ("GCRA", GCRA(BIG, HUGE_PERIOD)),
        ("LeakyBucket police", LeakyBucket(BIG, HUGE_PERIOD)),
        ("LeakyBucket shape", LeakyBucket(BIG, HUGE_PERIOD, mode="shape")),
        ("FixedWindow", FixedWindow(BIG, HUGE_PERIOD)),
        ("SlidingWindowLog", SlidingWindowLog(BIG, 0.01)),
        ("SlidingWindowCounter", SlidingWindowCounter(BIG, HUGE_PERIOD, buckets=10)),
    ]


LIMITS_STRATEGIES = ["FixedWindow", "MovingWindow", "SlidingWindowCounter"]


@contextmanager
def redis_url() -> Iterator[str]:
    """``$REDIS_URL``, or a throwaway server for the duration of the run."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from resilience.redis.testing import RedisServer

    with RedisServer() as server:
        yield server.url


def _expect_allowed(decision: Any, label: str) -> None:
    if not decision:
        raise RuntimeError(f"{label}: a benchmarked decision was rejected; the premise broke")


def _limits_strategies() -> tuple[Any, tuple[Any, ...]] | None:
    try:
        import limits
        from limits.strategies import (
            FixedWindowRateLimiter,
            MovingWindowRateLimiter,
            SlidingWindowCounterRateLimiter,
        )
    except ImportError:
        return None
    strategies = (FixedWindowRateLimiter, MovingWindowRateLimiter, SlidingWindowCounterRateLimiter)
    return limits.RateLimitItemPerHour(BIG), strategies


# -- interleaved timing --------------------------------------------------------------------


@dataclass
class Paired:
    """Per-call ns of ``CALLS`` PINGs and of the ``CALLS`` decisions interleaved with them."""

    bare: list[float]
    case: list[float]

    def row(self, table: str, name: str, *, bar: bool) -> Row:
        bare, case = statistics.median(self.bare), statistics.median(self.case)
        half = len(self.case) // 2
        halves = [
            statistics.median(self.case[part]) / statistics.median(self.bare[part])
            for part in (slice(None, half), slice(half, None))
        ]
        ratio = case / bare
        row: Row = {
            "table": table,
            "name": name,
            "ns_per_call_median": case,
            "ns_per_call_p25": _quantile(self.case, 0.25),
            "ping_ns_median": bare,
            "ratio_to_bare": ratio,
            "ratio_p25": _quantile(self.case, 0.25) / _quantile(self.bare, 0.25),
            "ratio_per_half": " / ".join(f"{value:.2f}" for value in halves),
        }
        if bar:
            row["bar"] = f"<= {BAR} x PING"
            row["result"] = "PASS" if ratio <= BAR else "FAIL"
        return row


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[int(q * (len(ordered) - 1))]


def paired_sync(bare: Callable[[], object], case: Callable[[], object]) -> Paired:
    """Time ``bare`` and ``case`` call by call, alternately, swapping which goes first."""
    for _ in range(WARMUP):  # connections, script cache
        bare()
        case()
    out = Paired([], [])
    pairs = ((bare, out.bare), (case, out.case)), ((case, out.case), (bare, out.bare))
    for call in range(CALLS):
        for fn, samples in pairs[call & 1]:
            start = _perf_ns()
            fn()
            samples.append(_perf_ns() - start)
    return out


async def paired_async(
    bare: Callable[[], Awaitable[object]], case: Callable[[], Awaitable[object]]
) -> Paired:
    for _ in range(WARMUP):
        await bare()
        await case()
    out = Paired([], [])
    pairs = ((bare, out.bare), (case, out.case)), ((case, out.case), (bare, out.bare))
    for call in range(CALLS):
        for fn, samples in pairs[call & 1]:
            start = _perf_ns()
            await fn()
            samples.append(_perf_ns() - start)
    return out


# -- the tables ----------------------------------------------------------------------------


def sync_table(url: str) -> list[Row]:
    from resilience.redis import RedisStore

    table = "Redis decision, sync: ns per call and x PING (same client, interleaved calls)"
    # The store as the docs build it; the baseline PING goes through the same client.
    store = RedisStore.from_url(url, timeout=TIMEOUT)
    ping = store.sync_client.ping
    rows: list[Row] = []
    first: Paired | None = None
    for label, algorithm in algorithms():
        limiter = RateLimiter(algorithm, store=store, name=f"bench-{label}", events=EventBus())
        _expect_allowed(limiter.try_acquire(KEY), label)
        paired = paired_sync(ping, partial(limiter.try_acquire, KEY))
        first = first or paired
        rows.append(paired.row(table, f"resilience {label}", bar=True))
    pooled = RedisStore.from_url(url, timeout=TIMEOUT, connections=0)
    limiter = RateLimiter(
        GCRA(BIG, HUGE_PERIOD), store=pooled, name="bench-pool", events=EventBus()
    )
    paired = paired_sync(ping, partial(limiter.try_acquire, KEY))
    rows.append(paired.row(table, "resilience GCRA, connections=0 (pool per call)", bar=False))
    pooled.close()
    peers = _limits_strategies()
    if peers is not None:
        from limits.storage import RedisStorage

        item, strategies = peers
        storage = RedisStorage(url)
        for name, strategy in zip(LIMITS_STRATEGIES, strategies, strict=True):
            hit = partial(strategy(storage).hit, item, KEY, name)  # one key each: layouts differ
            _expect_allowed(hit(), name)
            rows.append(paired_sync(ping, hit).row(table, f"limits {name}", bar=False))
    assert first is not None
    rows.insert(0, Paired(first.bare, first.bare).row(table, "redis-py PING (bare)", bar=False))
    store.close()
    return rows


async def async_table(url: str) -> list[Row]:
    from resilience.redis import RedisStore

    table = "Redis decision, async: ns per call and x PING (same client, interleaved calls)"
    store = RedisStore.from_url(url, timeout=TIMEOUT)
    ping = store.async_client.ping
    rows: list[Row] = []
    first: Paired | None = None
    for label, algorithm in algorithms():
        limiter = RateLimiter(algorithm, store=store, name=f"bench-{label}", events=EventBus())
        _expect_allowed(await limiter.atry_acquire(KEY), label)
        paired = await paired_async(ping, partial(limiter.atry_acquire, KEY))
        first = first or paired
        rows.append(paired.row(table, f"resilience {label}", bar=True))
    pooled = RedisStore.from_url(url, timeout=TIMEOUT, connections=0)
    limiter = RateLimiter(
        GCRA(BIG, HUGE_PERIOD), store=pooled, name="bench-pool", events=EventBus()
    )
    paired = await paired_async(ping, partial(limiter.atry_acquire, KEY))
    rows.append(paired.row(table, "resilience GCRA, connections=0 (pool per call)", bar=False))
    await pooled.aclose()
    peers = _limits_strategies()
    if peers is not None:
        from limits.aio.storage import RedisStorage as AsyncRedisStorage
        from limits.aio.strategies import (
            FixedWindowRateLimiter,
            MovingWindowRateLimiter,
            SlidingWindowCounterRateLimiter,
        )

        item, _ = peers
        storage = AsyncRedisStorage(f"async+{url}", implementation="redispy")
        strategies: tuple[Any, ...] = (
            FixedWindowRateLimiter,
            MovingWindowRateLimiter,
            SlidingWindowCounterRateLimiter,
        )
        for name, strategy in zip(LIMITS_STRATEGIES, strategies, strict=True):
            hit = partial(strategy(storage).hit, item, KEY, name)
            _expect_allowed(await hit(), name)
            rows.append((await paired_async(ping, hit)).row(table, f"limits {name}", bar=False))
    assert first is not None
    rows.insert(0, Paired(first.bare, first.bare).row(table, "redis-py PING (bare)", bar=False))
    await store.aclose()
    return rows


def _cluster_key(store: Any, algorithm: Algorithm, name: str) -> bytes:
    return store.table(algorithm, lambda: 0.0, name).redis_key(KEY)  # type: ignore[no-any-return]


def cluster_sync_table(startup: tuple[str, int]) -> list[Row]:
    import redis.cluster

    from resilience.redis import RedisStore

    table = "Redis Cluster decision, sync: ns per call and x cluster PING to the key's master"
    host, port = startup
    options = {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT}
    client = redis.cluster.RedisCluster(host=host, port=port, **options)
    store = RedisStore(client, timeout=TIMEOUT)
    rows: list[Row] = []
    first: Paired | None = None
    for label, algorithm in algorithms():
        name = f"bench-cluster-{label}"
        node = client.get_node_from_key(_cluster_key(store, algorithm, name))
        ping = partial(client.ping, target_nodes=node)
        limiter = RateLimiter(algorithm, store=store, name=name, events=EventBus())
        _expect_allowed(limiter.try_acquire(KEY), label)
        paired = paired_sync(ping, partial(limiter.try_acquire, KEY))
        first = first or paired
        rows.append(paired.row(table, f"resilience {label}", bar=True))
    algorithm = GCRA(BIG, HUGE_PERIOD)
    pooled = RedisStore(client, timeout=TIMEOUT, connections=0)
    name = "bench-cluster-pool"
    limiter = RateLimiter(algorithm, store=pooled, name=name, events=EventBus())
    node = client.get_node_from_key(_cluster_key(pooled, algorithm, name))
    ping = partial(client.ping, target_nodes=node)
    rows.append(
        paired_sync(ping, partial(limiter.try_acquire, KEY)).row(
            table, "resilience GCRA, connections=0 (node pool per call)", bar=False
        )
    )
    script = client.register_script("return 1")
    script(keys=[KEY])
    node = client.get_node_from_key(KEY)
    ping = partial(client.ping, target_nodes=node)
    evalsha = partial(client.evalsha, script.sha, 1, KEY)
    rows.append(
        paired_sync(ping, evalsha).row(table, "redis-py EVALSHA 'return 1' via cluster", bar=False)
    )
    bare = node.redis_connection.ping
    rows.append(paired_sync(ping, bare).row(table, "redis-py PING on the node's client", bar=False))
    assert first is not None
    rows.insert(0, Paired(first.bare, first.bare).row(table, "cluster PING (bare)", bar=False))
    store.close()
    client.close()
    return rows


async def cluster_async_table(startup: tuple[str, int]) -> list[Row]:
    import redis.asyncio.cluster

    from resilience.redis import RedisStore

    table = "Redis Cluster decision, async: ns per call and x cluster PING to the key's master"
    host, port = startup
    options = {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT}
    client = redis.asyncio.cluster.RedisCluster(host=host, port=port, **options)
    await client.initialize()
    store = RedisStore(client, timeout=TIMEOUT)
    rows: list[Row] = []
    first: Paired | None = None
    for label, algorithm in algorithms():
        name = f"bench-cluster-{label}"
        node = client.get_node_from_key(_cluster_key(store, algorithm, name))
        ping = partial(client.ping, target_nodes=node)
        limiter = RateLimiter(algorithm, store=store, name=name, events=EventBus())
        _expect_allowed(await limiter.atry_acquire(KEY), label)
        paired = await paired_async(ping, partial(limiter.atry_acquire, KEY))
        first = first or paired
        rows.append(paired.row(table, f"resilience {label}", bar=True))
    algorithm = GCRA(BIG, HUGE_PERIOD)
    pooled = RedisStore(client, timeout=TIMEOUT, connections=0)
    name = "bench-cluster-pool"
    limiter = RateLimiter(algorithm, store=pooled, name=name, events=EventBus())
    node = client.get_node_from_key(_cluster_key(pooled, algorithm, name))
    ping = partial(client.ping, target_nodes=node)
    paired = await paired_async(ping, partial(limiter.atry_acquire, KEY))
    rows.append(paired.row(table, "resilience GCRA, connections=0 (node pool per call)", bar=False))
    script = client.register_script("return 1")
    await script(keys=[KEY])
    node = client.get_node_from_key(KEY)
    ping = partial(client.ping, target_nodes=node)
    evalsha = partial(client.evalsha, script.sha, 1, KEY)
    paired = await paired_async(ping, evalsha)
    rows.append(paired.row(table, "redis-py EVALSHA 'return 1' via cluster", bar=False))
    assert first is not None
    rows.insert(0, Paired(first.bare, first.bare).row(table, "cluster PING (bare)", bar=False))
    await store.aclose()
    await pooled.aclose()
    await client.aclose()
    return rows


def cluster_tables() -> list[Row]:
    """Both cluster tables on a throwaway cluster; none when redis-cli is missing."""
    from resilience.redis.testing import RedisClusterNodes, redis_cli_binary, redis_server_binary

    if redis_cli_binary(redis_server_binary()) is None:
        return []
    with RedisClusterNodes() as cluster:
        startup = cluster.startup_nodes[0]
        rows = cluster_sync_table(startup)
        rows += asyncio.run(cluster_async_table(startup))
    return rows


def memory_table(url: str) -> list[Row]:
    """``MEMORY USAGE`` of one key per algorithm, after 1 and after 100 admitted requests."""
    import redis

    from resilience.redis import RedisStore

    table = "Redis memory per key (MEMORY USAGE, bytes; key name 'rl:<name>:{user:12345}:<kind>')"
    rows: list[Row] = []
    with redis.Redis.from_url(url) as client:
        store = RedisStore.from_url(url, timeout=1.0)
        configs: list[tuple[str, Algorithm]] = [
            ("TokenBucket / GCRA / LeakyBucket", TokenBucket(1000, 3600.0)),
            ("FixedWindow", FixedWindow(1000, 3600.0)),
            ("SlidingWindowLog", SlidingWindowLog(1000, 3600.0)),
            ("SlidingWindowCounter buckets=1", SlidingWindowCounter(1000, 3600.0)),
            ("SlidingWindowCounter buckets=10", SlidingWindowCounter(1000, 3600.0, buckets=10)),
        ]
        for label, algorithm in configs:
            limiter = RateLimiter(algorithm, store=store, name="api", events=EventBus())
            key = store.table(algorithm, limiter.clock.monotonic, "api").redis_key("user:12345")
            client.delete(key)
            sizes = []
            for n in (1, 100):
                while limiter.try_acquire("user:12345") and n > 1:
                    n -= 1
                sizes.append(client.memory_usage(key, samples=0))
            rows.append(
                {"table": table, "name": label, "after 1 request": sizes[0], "after 100": sizes[1]}
            )
        store.close()
    return rows


def run() -> list[Row]:
    with redis_url() as url:
        rows = sync_table(url)
        rows += asyncio.run(async_table(url))
        rows += memory_table(url)
    rows += cluster_tables()
    return rows


if __name__ == "__main__":
    from benchmarks.__main__ import main

    raise SystemExit(main(["bench_redis"]))
