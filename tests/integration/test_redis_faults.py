"""Outages: paused, frozen, killed and restarted Redis, flushed scripts.

Every call must come back within the configured timeout (measured with
``time.monotonic``; the bound below leaves room for a reconnect handshake and
a loaded CI machine, where an unbounded client would take seconds), answer
with the limiter's policy while Redis is away, and go back to Redis by
itself once it returns.  No key may be left without an expiry.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
import redis

from resilience import Decision, FixedWindow, MemoryStore, RateLimiter
from resilience.events import EventBus
from resilience.redis import RedisStore
from resilience.redis.testing import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TIMEOUT = 0.25
# A sync call may need a connect and a handshake read, each bounded by TIMEOUT.
BOUND = 2 * TIMEOUT + 0.5
LONG = 2.0**40  # one aligned window from 1970 to the year 36,000: none ends mid-test (server clock)
FAULTS = ["pause", "freeze", "kill", "restart", "script-flush"]


@dataclass
class Limiters:
    """The three outage policies side by side on one store."""

    fail_open: RateLimiter
    fail_closed: RateLimiter
    fallback: RateLimiter

    @classmethod
    def on(cls, store: RedisStore) -> Limiters:
        def make(name: str, **kw: object) -> RateLimiter:
            return RateLimiter(
                FixedWindow(3, LONG),
                store=store,
                name=name,
                events=EventBus(),
                **kw,  # type: ignore[arg-type]
            )

        backup = RateLimiter(FixedWindow(2, LONG), store=MemoryStore(), events=EventBus())
        return cls(
            make("open", on_store_error="fail_open"),
            make("closed", on_store_error="fail_closed"),
            make("fallback", on_store_error="fail_closed", fallback=backup),
        )

    def all(self) -> list[RateLimiter]:
        return [self.fail_open, self.fail_closed, self.fallback]


class Fault:
    """Inject one kind of outage into a server of the test's own, and end it."""

    def __init__(self, kind: str, server: RedisServer) -> None:
        self.kind = kind
        self.server = server

    @property
    def is_outage(self) -> bool:
        return self.kind != "script-flush"

    def inject(self) -> None:
        if self.kind == "pause":
            # WRITE mode blocks every script (they may write) but lets this connection
            # say UNPAUSE; the total hang (nothing answers at all) is the "freeze" case.
            self.admin = redis.Redis(port=self.server.port, socket_timeout=5)
            self.admin.client_pause(30_000, all=False)
        elif self.kind == "freeze":
            self.server.freeze()
        elif self.kind in ("kill", "restart"):
            self.server.kill()
        else:
            with redis.Redis(port=self.server.port) as admin:
                admin.script_flush()

    def end(self) -> None:
        if self.kind == "pause":
            self.admin.client_unpause()
            self.admin.close()
        elif self.kind == "freeze":
            self.server.thaw()
        elif self.kind == "kill":
            self.server.start()  # same port, empty data


@pytest.fixture(params=FAULTS)
def fault(request: pytest.FixtureRequest, fresh_redis_server: RedisServer) -> Iterator[Fault]:
    f = Fault(request.param, fresh_redis_server)
    yield f
    fresh_redis_server.thaw()  # never leave a frozen process behind


def timed_sync(call: Callable[[str], Decision], key: str) -> Decision:
    start = time.monotonic()
    decision = call(key)
    elapsed = time.monotonic() - start
    assert elapsed < BOUND, f"a decision took {elapsed:.3f}s during the outage"
    return decision


async def timed_async(call: Callable[[str], Awaitable[Decision]], key: str) -> Decision:
    start = time.monotonic()
    decision = await call(key)
    elapsed = time.monotonic() - start
    assert elapsed < BOUND, f"a decision took {elapsed:.3f}s during the outage"
    return decision


def check_outage_answers(lims: Limiters, answers: dict[str, list[Decision]], errors: int) -> None:
    """What each policy must have answered while Redis was away (``errors`` failed calls)."""
    opened, closed, fell = answers["open"], answers["closed"], answers["fallback"]
    if errors == 0:  # not an outage: Redis kept deciding (limit 3, one used before)
        for name in ("open", "closed", "fallback"):
            assert [d.allowed for d in answers[name]] == [True, True, False], name
        return
    assert all(d.allowed for d in opened)
    assert all(not d.allowed and d.retry_after > 0 for d in closed)
    # The in-memory fallback (limit 2) decides instead of failing open or closed.
    assert [d.allowed for d in fell] == [True, True, False]
    for lim in lims.all():
        assert lim.store_errors == 3


def resumed_sync(lims: Limiters) -> None:
    """Wait (bounded) until Redis answers again, then check it decides, not the policy."""
    probe = lims.fail_closed
    for _ in range(200):
        before = probe.store_errors
        timed_sync(probe.try_acquire, "probe")
        if probe.store_errors == before:
            break
        time.sleep(0.05)
    else:
        pytest.fail("decisions did not resume after the outage")
    for lim in lims.all():
        before = lim.store_errors
        assert [lim.try_acquire("after").allowed for _ in range(4)] == [True] * 3 + [False]
        assert lim.store_errors == before


async def resumed_async(lims: Limiters) -> None:
    import asyncio

    probe = lims.fail_closed
    for _ in range(200):
        before = probe.store_errors
        await timed_async(probe.atry_acquire, "probe")
        if probe.store_errors == before:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("decisions did not resume after the outage")
    for lim in lims.all():
        before = lim.store_errors
        assert [(await lim.atry_acquire("after")).allowed for _ in range(4)] == [True] * 3 + [False]
        assert lim.store_errors == before


def test_sync_outage(
    fault: Fault, fresh_redis_server: RedisServer, every_key_expires: Callable[[str], int]
) -> None:
    store = RedisStore.from_url(fresh_redis_server.url, timeout=TIMEOUT)
    lims = Limiters.on(store)
    try:
        for lim in lims.all():
            assert lim.try_acquire("k").allowed and lim.store_errors == 0
        fault.inject()
        if fault.kind == "restart":
            fault.server.start()  # back at once, empty, scripts gone, connections stale
        answers = {
            name: [timed_sync(lim.try_acquire, "k") for _ in range(3)]
            for name, lim in zip(("open", "closed", "fallback"), lims.all(), strict=True)
        }
        if fault.is_outage and fault.kind != "restart":
            check_outage_answers(lims, answers, errors=3)
        elif fault.kind == "script-flush":
            check_outage_answers(lims, answers, errors=0)
        fault.end()
        resumed_sync(lims)
    finally:
        fault.server.thaw()
        store.close()
    assert every_key_expires(fresh_redis_server.url) > 0


async def test_async_outage(
    fault: Fault, fresh_redis_server: RedisServer, every_key_expires: Callable[[str], int]
) -> None:
    store = RedisStore.from_url(fresh_redis_server.url, timeout=TIMEOUT)
    lims = Limiters.on(store)
    try:
        for lim in lims.all():
            assert (await lim.atry_acquire("k")).allowed and lim.store_errors == 0
        fault.inject()
        if fault.kind == "restart":
            fault.server.start()
        answers: dict[str, list[Decision]] = {}
        for name, lim in zip(("open", "closed", "fallback"), lims.all(), strict=True):
            answers[name] = [await timed_async(lim.atry_acquire, "k") for _ in range(3)]
        if fault.is_outage and fault.kind != "restart":
            check_outage_answers(lims, answers, errors=3)
        elif fault.kind == "script-flush":
            check_outage_answers(lims, answers, errors=0)
        fault.end()
        await resumed_async(lims)
    finally:
        fault.server.thaw()
        await store.aclose()
    assert every_key_expires(fresh_redis_server.url) > 0


async def test_a_hung_redis_does_not_block_the_event_loop(fresh_redis_server: RedisServer) -> None:
    import asyncio

    store = RedisStore.from_url(fresh_redis_server.url, timeout=TIMEOUT)
    lim = RateLimiter(FixedWindow(3, LONG), store=store, events=EventBus())
    assert (await lim.atry_acquire("k")).allowed
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(100):  # bounded
            await asyncio.sleep(0.01)
            ticks += 1
            if decided.done():
                return

    fresh_redis_server.freeze()
    try:
        decided = asyncio.ensure_future(lim.atry_acquire("k"))
        await asyncio.gather(decided, ticker())
    finally:
        fresh_redis_server.thaw()
        await store.aclose()
    assert decided.result().allowed and lim.store_errors == 1  # failed open, after the timeout
    assert ticks >= 5  # the loop kept running while the decision waited on Redis


async def test_async_client_without_timeouts_is_capped_by_the_store(
    fresh_redis_server: RedisServer,
) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(fresh_redis_server.url)  # 5 s timeouts, retries
    store = RedisStore(client, timeout=TIMEOUT)
    assert store.run_async is not None and store.run_async.capped
    lim = RateLimiter(FixedWindow(3, LONG), store=store, on_store_error="fail_closed")
    assert (await lim.atry_acquire("k")).allowed
    fresh_redis_server.freeze()
    try:
        decision = await timed_async(lim.atry_acquire, "k")
    finally:
        fresh_redis_server.thaw()
    assert not decision.allowed and lim.store_errors == 1
    await client.aclose()
