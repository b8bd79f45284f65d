"""A keyed POST through FailoverClient runs exactly once across two real idempotent origins.

Two aiohttp origins on 127.0.0.1 both run ``resilience.aiohttp.idempotency_middleware``
over ONE store (memory in this process, or a real redis-server), as two regions
of one provider share theirs.  The primary fails before running the handler
(load shedding, refused connection) or after running it (a 500 from a layer
outside the middleware, a dropped connection, an answer slower than
``attempt_timeout``, a handler still running when the client gives up: the
secondary answers 409 while the primary holds the key, and replays once it is done).  The
client fails over with the same ``Idempotency-Key``; the side effect happens
exactly once, and the secondary replays the primary's stored answer when
there is one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from resilience import EventBus, MemoryIdempotencyStore
from resilience.aiohttp import FailoverClient, idempotency_middleware
from resilience.idempotency.store import IdempotencyStore

pytestmark = pytest.mark.timeout(60)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SLOW = 3.0  # how long a "slow" primary takes; attempt_timeout is well below it
ATTEMPT_TIMEOUT = 0.5


@dataclass
class Origin:
    """An origin whose ``fault`` the test sets: what goes wrong around the idempotent handler."""

    name: str
    store: IdempotencyStore
    effects: list[str]
    fault: str = "none"
    port: int = 0
    runs: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _charge(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.runs += 1
        self.effects.append(f"{self.name}:{body}")  # the side effect, once per execution
        if self.fault == "slow-handler":  # still running (lease held) when the client gives up
            await asyncio.sleep(SLOW)
        return web.Response(status=201, text=f"charged by {self.name}")

    @web.middleware
    async def _fault(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Outside the idempotency middleware: the network, a gateway, the process."""
        if self.fault == "shed":  # refused before anything ran
            return web.Response(status=503, text="overloaded")
        response = await handler(request)  # ran, and its answer is stored
        if self.fault == "500-after":
            raise RuntimeError("crashed after the commit")  # aiohttp answers 500
        if self.fault == "drop-after":
            assert request.transport is not None
            request.transport.abort()  # the connection dies before the answer
            raise asyncio.CancelledError
        if self.fault == "slow-after":
            await asyncio.sleep(SLOW)
        return response

    async def start(self) -> None:
        middleware = idempotency_middleware(self.store, events=EventBus())  # wait=0: 409 at once
        app = web.Application(middlewares=[self._fault, middleware])
        app.router.add_post("/charges", self._charge)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


@dataclass
class Pair:
    primary: Origin
    secondary: Origin
    effects: list[str] = field(default_factory=list)


@pytest.fixture(params=["memory", "redis"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    store: Any
    if request.param == "redis":
        from resilience.redis import RedisIdempotencyStore

        url = request.getfixturevalue("redis_url")
        store = RedisIdempotencyStore.from_url(url, timeout=2.0, events=EventBus())
    else:
        store = MemoryIdempotencyStore()
    effects: list[str] = []
    # One store for both regions: that is what makes the key mean one operation.
    primary, secondary = Origin("primary", store, effects), Origin("secondary", store, effects)
    await primary.start()
    await secondary.start()
    try:
        yield Pair(primary, secondary, effects)
    finally:
        await primary.stop()
        await secondary.stop()
        close = getattr(store, "aclose", None)
        if close is not None:
            await close()


async def charge(pair: Pair, key: str, **options: Any) -> tuple[int, str, str | None]:
    client = FailoverClient(
        pair.primary.url,
        pair.secondary.url,
        attempt_timeout=options.pop("attempt_timeout", 10.0),
        health_interval=None,
        events=EventBus(),
        **options,
    )
    async with client, client.post("/charges", data=b"42", headers={"Idempotency-Key": key}) as r:
        return r.status, await r.text(), r.headers.get("Idempotent-Replayed")


@pytest.mark.parametrize("fault", ["shed", "refused"])
async def test_primary_fails_before_running_the_secondary_runs_it_once(
    pair: Pair, fault: str
) -> None:
    if fault == "refused":
        await pair.primary.stop()
    else:
        pair.primary.fault = fault
    status, text, replayed = await charge(pair, f"before-{fault}")
    assert (status, text, replayed) == (201, "charged by secondary", None)
    assert pair.effects == ["secondary:42"]
    # A client retrying the whole call later gets the same answer, nothing runs again.
    pair.primary.fault = "none"
    if fault == "refused":
        await pair.primary.start()
    status, text, replayed = await charge(pair, f"before-{fault}")
    assert (status, text, replayed) == (201, "charged by secondary", "true")
    assert pair.effects == ["secondary:42"]


@pytest.mark.parametrize("fault", ["500-after", "drop-after", "slow-after"])
async def test_primary_fails_after_running_the_secondary_replays_its_answer(
    pair: Pair, fault: str
) -> None:
    pair.primary.fault = fault
    status, text, replayed = await charge(pair, f"after-{fault}", attempt_timeout=ATTEMPT_TIMEOUT)
    assert (status, text, replayed) == (201, "charged by primary", "true")
    assert pair.effects == ["primary:42"]
    assert pair.secondary.runs == 0


async def test_primary_still_running_the_secondary_refuses_then_replays(pair: Pair) -> None:
    """The client gives up on a primary mid-handler: the secondary sees the lease and does not
    run it (409 + Retry-After); once the primary finishes, a retry gets its stored answer."""
    pair.primary.fault = "slow-handler"
    status, text, _ = await charge(pair, "in-flight", attempt_timeout=ATTEMPT_TIMEOUT)
    assert status == 409, text
    assert pair.effects == ["primary:42"]
    for _ in range(int((SLOW + 10) / 0.2)):  # bounded: the primary's handler ends after SLOW
        answer = await charge(pair, "in-flight")  # a caller retrying later, as 409 asks
        if answer[0] != 409:
            break
        await asyncio.sleep(0.2)
    assert answer == (201, "charged by primary", "true")
    assert pair.effects == ["primary:42"]
    assert pair.secondary.runs == 0
