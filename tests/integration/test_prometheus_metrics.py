"""Scrape a real /metrics endpoint served by uvicorn next to a real app under bounded traffic.

Each metric is checked against what the traffic did: how many requests the
limiter admitted and refused, the breaker's transitions and state, the
bulkhead's gauges while a request is held inside it, the retries scheduled,
and the latency histogram's counts per outcome.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, make_asgi_app
from prometheus_client.parser import text_string_to_metric_families

from resilience import Backoff, EventBus, FixedWindow, RateLimiter, compose, retry
from resilience.asgi import BulkheadMiddleware, CircuitBreakerMiddleware, RateLimitMiddleware
from resilience.breaker import CircuitBreaker
from resilience.bulkhead import Bulkhead
from resilience.events import CircuitStateChanged, RetryScheduled
from resilience.prometheus import METRIC_NAMES, PrometheusSink
from resilience.testing import FakeClock
from tests.integration.servers import serve_asgi

LIMIT = 5
LIMITED_REQUESTS = 12


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scrape: dict[Any, float], name: str, **labels: str) -> float:
    return scrape[(name, tuple(sorted(labels.items())))]


class World:
    """The app, its policies and the probe that holds a request inside the bulkhead."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.bus = EventBus()
        self.metrics = PrometheusSink(self.registry)
        self.bus.add(self.metrics)
        self.clock = FakeClock()
        self.limiter = RateLimiter(FixedWindow(LIMIT, 3600.0), name="api", events=self.bus)
        self.breaker = CircuitBreaker(
            "upstream",
            consecutive_failures=2,
            open_duration=30.0,
            clock=self.clock,
            events=self.bus,
        )
        self.bulkhead = Bulkhead("slow", max_concurrent=1, events=self.bus)
        self.metrics.track(self.limiter, self.breaker, self.bulkhead)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.attempts = 0
        self.work = compose(
            self.metrics.timed("work"),
            retry(
                attempts=3,
                on=(ConnectionError,),
                backoff=Backoff(initial=0.5, maximum=1.0, jitter=None),
                clock=FakeClock(),
                name="work-retry",
                events=self.bus,
            ),
        )

    async def flaky(self) -> str:
        self.attempts += 1
        if self.attempts % 3 != 0:  # two failures, then success: two retries per call
            raise ConnectionError("upstream hiccup")
        return "done"

    async def endpoint(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        status, body = 200, b"ok"
        if path == "/slow":
            self.entered.set()
            await self.release.wait()
        elif path == "/broken":
            status = 502
        elif path == "/work":
            body = (await self.work.acall(self.flaky)).encode()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    def app(self) -> Any:
        metrics_app = make_asgi_app(self.registry)
        limited = RateLimitMiddleware(self.endpoint, self.limiter)
        slow = BulkheadMiddleware(self.endpoint, self.bulkhead)
        guarded = CircuitBreakerMiddleware(self.endpoint, self.breaker)

        async def router(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":  # lifespan: nothing to set up
                return
            path = scope["path"]
            if path == "/metrics":
                await metrics_app(scope, receive, send)
            elif path == "/limited":
                await limited(scope, receive, send)
            elif path == "/slow":
                await slow(scope, receive, send)
            elif path == "/broken":
                await guarded(scope, receive, send)
            else:
                await self.endpoint(scope, receive, send)

        return router


async def scrape(client: httpx.AsyncClient) -> dict[Any, float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return samples(response.text)


@pytest.mark.timeout(60)
async def test_scraped_metrics_match_the_traffic() -> None:
    world = World()
    async with serve_asgi(world.app()) as base, httpx.AsyncClient(base_url=base) as client:
        statuses = [(await client.get("/limited")).status_code for _ in range(LIMITED_REQUESTS)]
        assert statuses.count(200) == LIMIT

        # Breaker: two 502s open it, the next two calls are refused without reaching the app.
        broken = [(await client.get("/broken")).status_code for _ in range(4)]
        assert broken == [502, 502, 503, 503]

        # Bulkhead: hold one request inside, so a second is shed and the gauges show it.
        held = asyncio.create_task(client.get("/slow"))
        async with asyncio.timeout(10):
            await world.entered.wait()
        shed = await client.get("/slow")
        assert shed.status_code == 503
        during = await scrape(client)
        world.release.set()
        assert (await held).status_code == 200

        for _ in range(3):
            assert (await client.get("/work")).text == "done"
        after = await scrape(client)

    dec = "resilience_decisions_total"
    assert value(after, dec, pattern="rate_limiter", policy="api", outcome="allowed") == LIMIT
    assert (
        value(after, dec, pattern="rate_limiter", policy="api", outcome="rejected")
        == LIMITED_REQUESTS - LIMIT
    )
    assert value(after, dec, pattern="circuit_breaker", policy="upstream", outcome="allowed") == 2
    assert value(after, dec, pattern="circuit_breaker", policy="upstream", outcome="rejected") == 2
    assert value(after, dec, pattern="bulkhead", policy="slow", outcome="allowed") == 1
    assert value(after, dec, pattern="bulkhead", policy="slow", outcome="rejected") == 1

    assert value(after, "resilience_circuit_state", policy="upstream", state="open") == 1
    assert value(after, "resilience_circuit_state", policy="upstream", state="closed") == 0
    assert value(after, "resilience_circuit_state", policy="upstream", state="half_open") == 0
    assert (
        value(
            after,
            "resilience_circuit_transitions_total",
            policy="upstream",
            from_state="closed",
            to_state="open",
        )
        == 1
    )

    assert value(during, "resilience_bulkhead_active", policy="slow") == 1
    assert value(during, "resilience_bulkhead_queued", policy="slow") == 0
    assert value(during, "resilience_bulkhead_limit", policy="slow") == 1
    assert value(after, "resilience_bulkhead_active", policy="slow") == 0

    assert value(after, "resilience_retry_attempts_total", policy="work-retry") == 6
    assert value(after, "resilience_call_duration_seconds_count", policy="work", outcome="ok") == 3
    assert (
        value(
            after, "resilience_call_duration_seconds_bucket", policy="work", outcome="ok", le="+Inf"
        )
        == 3
    )

    events = "resilience_events_total"
    assert (
        value(after, events, policy="upstream", kind="circuit_state_changed", outcome="open") == 1
    )
    assert value(after, events, policy="work-retry", kind="retry_scheduled", outcome="") == 6
    # min_level="info": per-request rejections are counted by the tallies, not built as events.
    assert not any(labels and ("kind", "rate_limited") in labels for _, labels in after)

    # No label carries a client key, a URL or an address.
    for _, labels in after:
        for _, label_value in labels:
            assert "127.0.0.1" not in label_value
            assert "/" not in label_value


async def test_every_documented_metric_is_exported() -> None:
    world = World()
    world.metrics.observe("work", "ok", 0.01)
    world.bus.emit(RetryScheduled("r", 1, 0.1, "x"))
    world.bus.emit(CircuitStateChanged("upstream", "closed", "open"))
    async with serve_asgi(world.app()) as base, httpx.AsyncClient(base_url=base) as client:
        scraped = await scrape(client)
    names = {name for name, _ in scraped}
    for metric in METRIC_NAMES:
        base_name = f"resilience_{metric}"
        assert any(n == base_name or n.startswith(base_name + "_") for n in names), metric


def test_tracking_keeps_counts_of_a_policy_that_went_away() -> None:
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    limiter = RateLimiter(FixedWindow(1, 60.0), name="gone", events=EventBus())
    sink.track(limiter)
    limiter.try_acquire("a")
    limiter.try_acquire("a")
    del limiter
    labels = {"pattern": "rate_limiter", "policy": "gone"}
    assert (
        registry.get_sample_value("resilience_decisions_total", {**labels, "outcome": "allowed"})
        == 1
    )
    assert (
        registry.get_sample_value("resilience_decisions_total", {**labels, "outcome": "rejected"})
        == 1
    )


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="min_level"):
        PrometheusSink(CollectorRegistry(), min_level="loud")
    with pytest.raises(ValueError, match="namespace"):
        PrometheusSink(CollectorRegistry(), namespace="a-b")
    with pytest.raises(ValueError, match="track"):
        PrometheusSink(CollectorRegistry()).track(object())


def test_idempotent_replays_and_conflicts_are_counted() -> None:
    from resilience import IdempotencyKeyReused, MemoryIdempotencyStore, idempotent

    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    bus = EventBus()
    bus.add(sink)
    runs: list[int] = []

    @idempotent(
        MemoryIdempotencyStore(),
        key=lambda order, amount: order,
        name="charges",
        events=bus,
    )
    def charge(order: str, amount: int) -> int:
        runs.append(amount)
        return amount

    assert charge("o-1", 5) == 5
    assert charge("o-1", 5) == 5
    assert charge("o-1", 5) == 5
    with pytest.raises(IdempotencyKeyReused):
        charge("o-1", 6)
    assert runs == [5]
    labels = {"pattern": "idempotency", "policy": "charges"}
    assert (
        registry.get_sample_value("resilience_decisions_total", {**labels, "outcome": "replayed"})
        == 2
    )
    assert (
        registry.get_sample_value("resilience_decisions_total", {**labels, "outcome": "reused"})
        == 1
    )
