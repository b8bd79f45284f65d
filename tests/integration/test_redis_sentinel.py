"""Sentinel: a store on redis-py's Sentinel-managed clients, through a real failover.

A master, a replica and one Sentinel run on 127.0.0.1.  Decisions go to the
master; ``SENTINEL FAILOVER`` promotes the replica; the store must keep
answering by itself, from the state the replica holds, sync and async, with
every call back within its bound.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from resilience import FixedWindow, RateLimiter
from resilience.events import EventBus
from resilience.redis import RedisStore
from resilience.redis.testing import RedisServer, free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TIMEOUT = 0.25
BOUND = 2 * TIMEOUT + 0.5  # connect + read, with room for a loaded machine
LONG = 2.0**40  # one aligned window from 1970 to the year 36,000: none ends mid-test (server clock)


def _wait(predicate: object, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Deployment:
    master: RedisServer
    replica: RedisServer
    sentinel_port: int

    def master_port(self) -> int:
        with redis.Redis(port=self.sentinel_port, socket_timeout=1) as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name("mymaster")
            return int(port)


@pytest.fixture
def deployment(redis_server: RedisServer) -> Iterator[Deployment]:
    binary = redis_server.binary  # the same binary the session fixture found
    with RedisServer(binary) as master:
        replica_args = ("--replicaof", "127.0.0.1", str(master.port))
        with RedisServer(binary, extra_args=replica_args) as replica:

            def linked() -> bool:
                with redis.Redis(port=replica.port) as client:
                    info = client.info("replication")
                return bool(info.get("master_link_status") == "up")

            _wait(linked, "the replica to sync")
            port = free_port()
            conf = os.path.join(replica.dir, "sentinel.conf")
            with open(conf, "w", encoding="utf-8") as file:
                file.write(
                    f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {replica.dir}\n"
                    f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
                    "sentinel down-after-milliseconds mymaster 2000\n"
                    "sentinel failover-timeout mymaster 10000\n"
                )
            log = open(os.path.join(replica.dir, "sentinel.log"), "ab")  # noqa: SIM115
            process = subprocess.Popen([binary, conf, "--sentinel"], stdout=log, stderr=log)
            try:
                found = Deployment(master, replica, port)

                def knows_replica() -> bool:
                    try:
                        with redis.Redis(port=port, socket_timeout=1) as sentinel:
                            return bool(sentinel.sentinel_slaves("mymaster"))
                    except redis.RedisError:
                        return False

                _wait(knows_replica, "Sentinel to discover the replica")
                yield found
            finally:
                process.terminate()
                process.wait(timeout=10)
                log.close()


def _store(deployment: Deployment) -> RedisStore:
    options = {
        "socket_timeout": TIMEOUT,
        "socket_connect_timeout": TIMEOUT,
    }
    sentinels = [("127.0.0.1", deployment.sentinel_port)]
    sync = redis.sentinel.Sentinel(sentinels, sentinel_kwargs=options, **options).master_for(
        "mymaster", retry=Retry(NoBackoff(), 0), **options
    )
    aio = redis.asyncio.sentinel.Sentinel(sentinels, sentinel_kwargs=options, **options)
    from redis.asyncio.retry import Retry as AsyncRetry

    amaster = aio.master_for("mymaster", retry=AsyncRetry(NoBackoff(), 0), **options)
    return RedisStore(sync, async_client=amaster, timeout=TIMEOUT)


def test_decisions_follow_a_sentinel_failover(deployment: Deployment) -> None:
    store = _store(deployment)
    rl = RateLimiter(FixedWindow(100, LONG), store=store, name="sentinel", events=EventBus())

    async def adecide() -> int:
        return (await rl.atry_acquire("k")).remaining

    loop = asyncio.new_event_loop()
    try:
        assert [rl.try_acquire("k").remaining for _ in range(3)] == [99, 98, 97]
        assert loop.run_until_complete(adecide()) == 96
        with redis.Redis(port=deployment.master.port) as master:
            assert master.wait(1, 5_000) == 1  # the replica holds the state before the failover
        with redis.Redis(port=deployment.sentinel_port, socket_timeout=5) as sentinel:

            def failover_started() -> bool:
                try:  # refused (NOGOODSLAVE) until Sentinel has the replica's INFO
                    sentinel.execute_command("SENTINEL", "FAILOVER", "mymaster")
                except redis.ResponseError:
                    return False
                return True

            _wait(failover_started, "Sentinel to accept the failover")
        _wait(lambda: deployment.master_port() == deployment.replica.port, "the failover")

        # Sync and async, every call within its bound, until both answer from the new master.
        answers: list[int] = []
        deadline = time.monotonic() + 30
        while len(answers) < 4 and time.monotonic() < deadline:
            started = time.monotonic()
            errors = rl.store_errors
            if len(answers) % 2 == 0:
                remaining = rl.try_acquire("k").remaining
            else:
                remaining = loop.run_until_complete(adecide())
            assert time.monotonic() - started < BOUND
            if rl.store_errors == errors:
                answers.append(remaining)
            else:
                time.sleep(0.1)  # the old master may still accept connections briefly
        assert answers == [95, 94, 93, 92]  # the promoted replica's state, counted once each
        with redis.Redis(port=deployment.replica.port) as promoted:
            assert promoted.info("replication")["role"] == "master"
        loop.run_until_complete(store.aclose())
    finally:
        loop.close()
    store.close()
