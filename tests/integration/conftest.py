"""A real ``redis-server`` for the integration tests (no mocks, no fakeredis).

Tests that need Redis ask for ``redis_server`` (one server for the session,
flushed before each test by ``redis_url``) or ``fresh_redis_server`` (their
own server, for tests that kill, freeze or restart it).  When the binary is
missing the tests are skipped, unless ``RESILIENCE_REQUIRE_REDIS`` is set
(CI sets it), in which case they fail: CI must never pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import redis

from resilience.redis.testing import (
    RedisClusterNodes,
    RedisServer,
    redis_cli_binary,
    redis_server_binary,
)

REQUIRE = "RESILIENCE_REQUIRE_REDIS"


def _binary() -> str:
    binary = redis_server_binary()
    if binary is None:
        message = (
            "redis-server binary not found on PATH (install it, e.g. `apt-get install "
            "redis-server`, or set REDIS_SERVER=/path/to/redis-server)"
        )
        if os.environ.get(REQUIRE):
            pytest.fail(f"{message}; {REQUIRE} is set, so this is an error, not a skip")
        pytest.skip(message)
    return binary


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One server shared by the session's tests; do not kill or freeze it."""
    server = RedisServer(_binary()).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server's URL, its data flushed for this test."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
        client.script_flush()
    return redis_server.url


@pytest.fixture
def fresh_redis_server() -> Iterator[RedisServer]:
    """A server of this test's own, free to be killed, frozen and restarted."""
    server = RedisServer(_binary()).start()
    try:
        yield server
    finally:
        server.close()


def _cluster(binary: str) -> RedisClusterNodes:
    if redis_cli_binary(binary) is None:
        message = "redis-cli not found beside redis-server or on PATH (set REDIS_CLI)"
        if os.environ.get(REQUIRE):
            pytest.fail(f"{message}; {REQUIRE} is set, so this is an error, not a skip")
        pytest.skip(message)
    return RedisClusterNodes(binary).start()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """A real Redis Cluster (3 masters, 3 replicas) shared by the session; do not kill nodes."""
    cluster = _cluster(_binary())
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def fresh_redis_cluster() -> Iterator[RedisClusterNodes]:
    """A cluster of this test's own, free to lose a master."""
    cluster = _cluster(_binary())
    try:
        yield cluster
    finally:
        cluster.close()


def _every_key_expires(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        checked = 0
        for key in client.scan_iter(count=1000):
            ttl = client.pttl(key)
            assert ttl != -1, f"key {key!r} has no expiry"
            checked += 1
        return checked


@pytest.fixture
def every_key_expires() -> Callable[[str], int]:
    """``check(url)``: no key without a TTL remains (SCAN + PTTL); returns keys checked."""
    return _every_key_expires
