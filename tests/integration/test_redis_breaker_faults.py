"""Redis outages under a shared breaker: the outage policy answers, within the timeout.

A killed server (connection refused) and a frozen one (``SIGSTOP``: nothing
answers, the read times out), with the sync and the asyncio client and both
policies.  Every call returns within the bound (generous: a reconnect and a
loaded CI machine), no redis-py exception reaches the caller, each failure is
counted and emitted as ``StoreFailed``, and once Redis is back the breaker
reads the shared state again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from resilience.breaker import CircuitBreaker, CircuitState, CountWindow
from resilience.errors import CircuitOpen, StoreUnavailable
from resilience.events import EventBus, StoreFailed
from resilience.redis import RedisStore
from resilience.redis.breaker import RedisBreakerStore
from resilience.redis.testing import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TIMEOUT = 0.25
BOUND = 2 * TIMEOUT + 0.5  # a connect and a handshake read, each bounded by TIMEOUT


class Outage:
    def __init__(self, kind: str, server: RedisServer) -> None:
        self.kind, self.server = kind, server

    def start(self) -> None:
        if self.kind == "kill":
            self.server.kill()
        else:
            self.server.freeze()

    def end(self) -> None:
        if self.kind == "kill":
            self.server.start()  # same port, empty data
        else:
            self.server.thaw()


@pytest.fixture(params=["kill", "freeze"])
def outage(request: pytest.FixtureRequest, fresh_redis_server: RedisServer) -> Iterator[Outage]:
    yield Outage(request.param, fresh_redis_server)
    fresh_redis_server.thaw()  # never leave a frozen process behind


def _breaker(store: RedisStore, policy: str, events: list[Any]) -> CircuitBreaker:
    shared = RedisBreakerStore(
        store,
        on_store_error=policy,  # type: ignore[arg-type]
        store_error_retry_after=2.0,
        events=EventBus([events.append]),
    )
    return CircuitBreaker(
        "dep",
        minimum_calls=2,
        window=CountWindow(2),
        open_duration=60.0,
        store=shared,
        events=EventBus(),
    )


def timed(call: Callable[[], Any]) -> Any:
    start = time.monotonic()
    try:
        return call()
    finally:
        elapsed = time.monotonic() - start
        assert elapsed < BOUND, f"a call took {elapsed:.3f}s during the outage"


def failures(events: list[Any]) -> list[tuple[str, str]]:
    return [(e.operation, e.action) for e in events if isinstance(e, StoreFailed)]


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
def test_sync_outage(outage: Outage, policy: str, fresh_redis_server: RedisServer) -> None:
    store = RedisStore.from_url(fresh_redis_server.url, timeout=TIMEOUT)
    events: list[Any] = []
    breaker = _breaker(store, policy, events)
    try:
        assert breaker.call(int) == 0
        running = breaker.permit()  # a call in flight when Redis goes away
        outage.start()
        if policy == "fail_open":
            assert timed(lambda: breaker.call(str, "x")) == "x"
            assert timed(lambda: breaker.state) is CircuitState.CLOSED
        else:
            with pytest.raises(CircuitOpen) as refused:
                timed(lambda: breaker.call(str, "x"))
            assert refused.value.retry_after == 2.0
            assert timed(lambda: breaker.state) is CircuitState.OPEN
        timed(lambda: breaker.on_failure(running))  # its outcome is lost, quietly
        with pytest.raises(StoreUnavailable):  # an operator must know it did not happen
            timed(breaker.force_open)
        assert failures(events) == [
            ("acquire", policy),
            ("snapshot", policy),
            ("record", "dropped"),
            ("control", "raised"),
        ]
        assert breaker._table.store_errors == 4  # type: ignore[attr-defined]
        outage.end()
        _resumed(breaker, events)
    finally:
        fresh_redis_server.thaw()
        store.close()


def _resumed(breaker: CircuitBreaker, events: list[Any]) -> None:
    for _ in range(200):  # bounded: until Redis answers again
        before = len(events)
        breaker.snapshot()
        if len(events) == before:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the breaker did not reach Redis again")
    breaker.reset()
    for _ in range(2):
        with pytest.raises(OSError):
            breaker.call(_fail)
    assert breaker.state is CircuitState.OPEN


def _fail() -> None:
    raise OSError


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
async def test_async_outage(outage: Outage, policy: str, fresh_redis_server: RedisServer) -> None:
    import asyncio

    store = RedisStore.from_url(fresh_redis_server.url, timeout=TIMEOUT)
    events: list[Any] = []
    breaker = _breaker(store, policy, events)

    async def echo(value: str) -> str:
        return value

    async def atimed(coro: Any) -> Any:
        start = time.monotonic()
        try:
            return await coro
        finally:
            elapsed = time.monotonic() - start
            assert elapsed < BOUND, f"a call took {elapsed:.3f}s during the outage"

    try:
        assert await breaker.acall(echo, "a") == "a"
        outage.start()
        if policy == "fail_open":
            assert await atimed(breaker.acall(echo, "b")) == "b"
        else:
            with pytest.raises(CircuitOpen):
                await atimed(breaker.acall(echo, "b"))
        assert await atimed(breaker.astate()) in (CircuitState.CLOSED, CircuitState.OPEN)
        with pytest.raises(StoreUnavailable):
            await atimed(breaker.areset())
        assert [op for op, _ in failures(events)] == ["acquire", "snapshot", "control"]
        outage.end()
        for _ in range(200):  # bounded: until Redis answers again
            before = len(events)
            await breaker.asnapshot()
            if len(events) == before:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the breaker did not reach Redis again")
        assert await breaker.acall(echo, "c") == "c"
    finally:
        fresh_redis_server.thaw()
        await store.aclose()


def test_state_survives_a_frozen_server(fresh_redis_server: RedisServer) -> None:
    """A hung server loses nothing: once it answers, the circuit is as it was."""
    store = RedisStore.from_url(fresh_redis_server.url, timeout=TIMEOUT)
    events: list[Any] = []
    breaker = _breaker(store, "fail_open", events)
    try:
        for _ in range(2):
            with pytest.raises(OSError):
                breaker.call(_fail)
        fresh_redis_server.freeze()
        assert timed(lambda: breaker.call(int)) == 0  # fails open meanwhile
        fresh_redis_server.thaw()
        for _ in range(200):  # bounded: until Redis answers again
            before = len(events)
            state = breaker.state
            if len(events) == before:
                break
            time.sleep(0.05)
        assert state is CircuitState.OPEN
        with pytest.raises(CircuitOpen):
            breaker.call(int)
    finally:
        fresh_redis_server.thaw()
        store.close()
