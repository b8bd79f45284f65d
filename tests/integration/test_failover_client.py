"""FailoverClient against two real aiohttp origins on 127.0.0.1 whose behaviour the tests flip."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from resilience import EventBus, RetryBudget
from resilience.aiohttp import FailoverClient, FailoverError
from resilience.events import Event, FailoverAttempt, FailoverSwitched
from resilience.testing import FakeClock
from tests.integration.origin_server import ScriptedOrigin

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def origins() -> AsyncIterator[tuple[ScriptedOrigin, ScriptedOrigin]]:
    primary, secondary = ScriptedOrigin("primary"), ScriptedOrigin("secondary")
    await primary.start()
    await secondary.start()
    try:
        yield primary, secondary
    finally:
        await primary.stop()
        await secondary.stop()


def acquired(session: aiohttp.ClientSession) -> int:
    """Connections the client holds (taken from the pool and not yet given back or closed)."""
    connector: Any = session.connector
    return len(connector._acquired)


async def client_for(
    primary: ScriptedOrigin, secondary: ScriptedOrigin, **options: Any
) -> FailoverClient:
    options.setdefault("health_interval", None)
    options.setdefault("events", EventBus())
    return FailoverClient(primary.url, secondary.url, **options)


def _server_side(task: asyncio.Task[Any]) -> bool:
    """The origins' own connection handlers (keep-alive), not the client's tasks."""
    return "RequestHandler" in task.get_coro().__qualname__  # type: ignore[union-attr]


async def wait_until(predicate: Any, limit: float = 5.0) -> None:
    """Poll (bounded) until ``predicate()`` holds."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - the server state is polled, not signalled
            await asyncio.sleep(0.01)


# -- per-request failover -----------------------------------------------------------------


async def test_get_on_a_503_primary_is_served_by_the_secondary(origins: Any) -> None:
    primary, secondary = origins
    primary.mode, primary.error_padding = "503", 4 << 20  # not read ahead: must be released
    async with await client_for(primary, secondary) as client:
        async with client.get("/items", params={"q": "1"}) as resp:
            assert resp.status == 200
            assert await resp.text() == "secondary:GET:-"
        assert acquired(client._session) == 0  # type: ignore[arg-type]
    assert [h.path for h in primary.hits] == ["/items?q=1"]
    assert [h.path for h in secondary.hits] == ["/items?q=1"]


async def test_await_form_and_request_method(origins: Any) -> None:
    primary, secondary = origins
    async with await client_for(primary, secondary) as client:
        resp = await client.request("get", "/a")
        assert resp.status == 200 and await resp.text() == "primary:GET:-"
        resp.release()
        async with client.head("/a") as head:
            assert head.status == 200


async def test_post_without_a_key_is_not_replayed(origins: Any) -> None:
    primary, secondary = origins
    primary.mode = "503"
    async with await client_for(primary, secondary) as client:
        async with client.post("/orders", data=b"x") as resp:
            assert resp.status == 503
            assert await resp.text() == "primary unavailable"
    assert len(primary.hits) == 1 and secondary.hits == []


async def test_post_with_an_idempotency_key_fails_over_once(origins: Any) -> None:
    primary, secondary = origins
    primary.mode = "503"
    async with await client_for(primary, secondary) as client:
        headers = {"Idempotency-Key": "order-42"}
        async with client.post("/orders", json={"n": 1}, headers=headers) as resp:
            assert resp.status == 200
            assert await resp.text() == 'secondary:POST:{"n": 1}'
    assert len(secondary.hits) == 1
    assert secondary.hits[0].headers["Idempotency-Key"] == "order-42"


async def test_a_streamed_body_never_fails_over(origins: Any) -> None:
    primary, secondary = origins
    primary.mode = "503"

    async def chunks() -> AsyncIterator[bytes]:
        yield b"part1-"
        yield b"part2"

    async with await client_for(primary, secondary) as client:
        headers = {"Idempotency-Key": "k"}
        async with client.post("/upload", data=chunks(), headers=headers) as resp:
            assert resp.status == 503
    assert primary.hits[0].body == b"part1-part2"
    assert secondary.hits == []


async def test_refused_primary_fails_over(origins: Any) -> None:
    primary, secondary = origins
    await primary.stop()
    async with await client_for(primary, secondary) as client:
        async with client.get("/x") as resp:
            assert await resp.text() == "secondary:GET:-"
        assert acquired(client._session) == 0  # type: ignore[arg-type]


async def test_black_holed_primary_fails_over_after_the_attempt_timeout(origins: Any) -> None:
    primary, secondary = origins
    primary.mode = "blackhole"
    async with await client_for(primary, secondary, attempt_timeout=1.0) as client:
        async with client.get("/x") as resp:
            assert await resp.text() == "secondary:GET:-"
        assert acquired(client._session) == 0  # type: ignore[arg-type]
    assert len(primary.hits) == 1  # it got the request and never answered


async def test_slow_primary_fails_over_after_the_attempt_timeout(origins: Any) -> None:
    primary, secondary = origins
    primary.mode, primary.delay = "slow", 20.0
    async with await client_for(primary, secondary, attempt_timeout=0.5) as client:
        async with client.get("/x") as resp:
            assert await resp.text() == "secondary:GET:-"
        assert acquired(client._session) == 0  # type: ignore[arg-type]
        assert client.snapshot().primary.consecutive_failures == 1  # counted as a failure
    await wait_until(lambda: primary.disconnects == 1)  # the timed-out request was dropped


async def test_a_black_holed_health_endpoint_fails_its_checks(origins: Any) -> None:
    primary, secondary = origins
    primary.health = "blackhole"
    client = await client_for(primary, secondary, attempt_timeout=0.3, unhealthy_after=2)
    async with client:
        assert await client.check_health() == {"primary": False, "secondary": True}
        await client.check_health()
        assert client.active == "secondary"


async def test_both_refused_gives_one_clear_error(origins: Any) -> None:
    primary, secondary = origins
    await primary.stop()
    await secondary.stop()
    async with await client_for(primary, secondary) as client:
        with pytest.raises(FailoverError) as caught:
            await client.get("/x")
    assert [origin for origin, _ in caught.value.failures] == ["primary", "secondary"]
    assert isinstance(caught.value, aiohttp.ClientConnectionError)
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectionError)


async def test_both_503_gives_the_last_response_and_no_retry_storm(origins: Any) -> None:
    primary, secondary = origins
    primary.mode = secondary.mode = "503"
    primary.error_padding = 4 << 20
    async with await client_for(primary, secondary) as client:
        for _ in range(5):
            async with client.get("/x") as resp:
                assert resp.status == 503
        assert acquired(client._session) == 0  # type: ignore[arg-type]
    assert len(primary.hits) + len(secondary.hits) == 10  # exactly two attempts each


async def test_refused_secondary_after_a_503_primary_returns_the_primary_response(
    origins: Any,
) -> None:
    primary, secondary = origins
    primary.mode = "503"
    await secondary.stop()
    async with await client_for(primary, secondary) as client:
        async with client.get("/x") as resp:
            assert resp.status == 503
            assert await resp.text() == "primary unavailable"
        assert acquired(client._session) == 0  # type: ignore[arg-type]


async def test_a_passed_session_is_used_and_not_closed(origins: Any) -> None:
    primary, secondary = origins
    async with aiohttp.ClientSession() as session:
        async with await client_for(primary, secondary, session=session) as client:
            async with client.get("/x") as resp:
                assert resp.status == 200
        assert not session.closed
        assert acquired(session) == 0


async def test_requests_outside_the_context_are_refused(origins: Any) -> None:
    primary, secondary = origins
    client = await client_for(primary, secondary)
    with pytest.raises(RuntimeError, match="async with"):
        await client.get("/x")
    async with client:
        with pytest.raises(ValueError, match="path"):
            await client.get("http://elsewhere.example/x")


# -- the stateful switch ------------------------------------------------------------------


async def test_switch_after_exactly_unhealthy_after_failed_checks_and_back(origins: Any) -> None:
    primary, secondary = origins
    bus = EventBus()
    seen: list[Event] = []
    bus.add(seen.append)
    client = await client_for(primary, secondary, unhealthy_after=3, healthy_after=2, events=bus)
    async with client:
        primary.health = "fail"
        for _ in range(2):
            await client.check_health()
            assert client.active == "primary"
        await client.check_health()
        assert client.active == "secondary"
        async with client.get("/x") as resp:  # traffic now goes to the secondary first
            assert await resp.text() == "secondary:GET:-"
        assert primary.hits == []
        primary.health = "ok"
        await client.check_health()
        assert client.active == "secondary"
        await client.check_health()
        assert client.active == "primary"
        snap = client.snapshot()
        assert snap.switches == 2 and snap.primary.healthy
    switched = [e for e in seen if isinstance(e, FailoverSwitched)]
    assert [(e.old, e.new) for e in switched] == [
        ("primary", "secondary"),
        ("secondary", "primary"),
    ]


async def test_a_503_burst_shorter_than_the_hysteresis_never_moves_traffic(origins: Any) -> None:
    primary, secondary = origins
    from resilience import CircuitBreaker

    # Breakers that only trip on 100 failures in a row: the default would open on the 2/3
    # failure rate, which is the breaker's job; this test is about the switch's hysteresis.
    breakers = tuple(
        CircuitBreaker(n, consecutive_failures=100, failure_rate_threshold=None) for n in "ps"
    )
    client = await client_for(primary, secondary, unhealthy_after=3, breakers=breakers)
    async with client:
        for _ in range(5):  # bursts of two 503s between successes
            primary.burst = 2
            for expected in ("secondary", "secondary", "primary"):
                async with client.get("/x") as resp:
                    assert await resp.text() == f"{expected}:GET:-"
            assert client.active == "primary"
        assert client.snapshot().switches == 0
    assert len(primary.hits) == 15 and len(secondary.hits) == 10


async def test_passive_failures_switch_too(origins: Any) -> None:
    primary, secondary = origins
    primary.mode = "503"
    async with await client_for(primary, secondary, unhealthy_after=3) as client:
        for _ in range(3):
            assert client.active == "primary"
            async with client.get("/x") as resp:
                assert resp.status == 200
        assert client.active == "secondary"
        async with client.get("/x") as resp:
            assert resp.status == 200
        assert len(primary.hits) == 3 and len(secondary.hits) == 4


async def test_a_flapping_primary_does_not_make_traffic_flap(origins: Any) -> None:
    primary, secondary = origins
    async with await client_for(primary, secondary, unhealthy_after=2, healthy_after=2) as client:
        for round_ in range(20):
            primary.health = "fail" if round_ % 2 else "ok"
            await client.check_health()
            assert client.active == "primary"
        assert client.snapshot().switches == 0


async def test_background_health_checks_start_and_stop(origins: Any) -> None:
    primary, secondary = origins
    primary.health = "fail"
    client = await client_for(primary, secondary, health_interval=0.02, unhealthy_after=2)
    async with client:
        await wait_until(lambda: client.active == "secondary")
        assert primary.health_hits >= 2
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert "failover-health" not in names
    hits = primary.health_hits
    await asyncio.sleep(0.1)
    assert primary.health_hits == hits  # stopped: no more checks


async def test_open_circuit_sends_even_a_post_to_the_other_origin(origins: Any) -> None:
    primary, secondary = origins
    from resilience import CircuitBreaker

    breakers = (CircuitBreaker("p"), CircuitBreaker("s"))
    breakers[0].force_open()
    async with await client_for(primary, secondary, breakers=breakers) as client:
        async with client.post("/orders", data=b"1") as resp:
            assert await resp.text() == "secondary:POST:1"
        breakers[1].force_open()
        with pytest.raises(FailoverError, match="circuit open"):
            await client.get("/x")
    assert primary.hits == []


# -- protecting the secondary --------------------------------------------------------------


async def test_the_budget_caps_failover_traffic(origins: Any) -> None:
    primary, secondary = origins
    primary.mode = "503"
    budget = RetryBudget(ratio=0.0, min_per_second=0.2, window=10.0, clock=FakeClock())  # 2
    client = await client_for(primary, secondary, budget=budget, unhealthy_after=100)
    async with client:
        statuses = []
        for _ in range(6):
            async with client.get("/x") as resp:
                statuses.append(resp.status)
        assert acquired(client._session) == 0  # type: ignore[arg-type]
    assert statuses == [200, 200, 503, 503, 503, 503]
    assert len(secondary.hits) == 2


# -- hedging ---------------------------------------------------------------------------------


async def test_hedge_first_answer_wins_and_the_loser_is_cancelled(origins: Any) -> None:
    primary, secondary = origins
    primary.mode, primary.delay = "slow", 30.0
    tasks_before = asyncio.all_tasks()
    from resilience import CircuitBreaker

    breakers = (CircuitBreaker("p", minimum_calls=1), CircuitBreaker("s", minimum_calls=1))
    client = await client_for(primary, secondary, hedge_after=0.05, breakers=breakers)
    async with client:
        async with client.get("/x") as resp:
            assert await resp.text() == "secondary:GET:-"
        session: Any = client._session
        assert acquired(session) == 0
        pooled = [key.port for key in session.connector._conns]
        assert primary.port not in pooled  # the loser's connection was closed, not pooled
        await wait_until(lambda: primary.disconnects == 1)  # and the server saw it go
        left = [t for t in asyncio.all_tasks() - tasks_before if not _server_side(t)]
        assert left == []  # no attempt task outlives the request
        assert client.snapshot().primary.consecutive_failures == 0  # a loser counts as nothing
        assert breakers[0].snapshot()[:3] == ("closed", False, 0)  # nothing recorded
        assert breakers[1].snapshot().calls == 1


async def test_hedge_not_needed_when_the_first_answers_in_time(origins: Any) -> None:
    primary, secondary = origins
    async with await client_for(primary, secondary, hedge_after=5.0) as client:
        async with client.get("/x") as resp:
            assert await resp.text() == "primary:GET:-"
    assert secondary.hits == []


async def test_hedge_falls_back_to_failover_on_an_early_failure(origins: Any) -> None:
    primary, secondary = origins
    primary.mode = "503"
    async with await client_for(primary, secondary, hedge_after=5.0) as client:
        async with client.get("/x") as resp:
            assert await resp.text() == "secondary:GET:-"
        assert acquired(client._session) == 0  # type: ignore[arg-type]


async def test_hedge_is_for_safe_methods_only(origins: Any) -> None:
    primary, secondary = origins
    primary.mode, primary.delay = "slow", 0.3
    async with await client_for(primary, secondary, hedge_after=0.05) as client:
        headers = {"Idempotency-Key": "k"}
        async with client.post("/x", data=b"1", headers=headers) as resp:
            assert await resp.text() == "primary:POST:1"
    assert secondary.hits == []


# -- credentials -----------------------------------------------------------------------------

CREDENTIALS = {
    "Authorization": "Bearer s3cret",
    "Cookie": "session=abc",
    "Proxy-Authorization": "Basic eA==",
}


async def test_credentials_do_not_reach_the_other_host(origins: Any) -> None:
    primary, secondary = origins
    primary.mode = "503"
    async with await client_for(primary, secondary) as client:
        headers = {**CREDENTIALS, "X-Trace": "t1"}
        async with client.get("/x", headers=headers, cookies={"c": "1"}) as resp:
            assert resp.status == 200
    assert primary.hits[0].headers["Authorization"] == "Bearer s3cret"
    sent = secondary.hits[0].headers
    assert sent["X-Trace"] == "t1"
    assert not {"Authorization", "Cookie", "Proxy-Authorization"} & set(sent)


async def test_forward_credentials_sends_them(origins: Any) -> None:
    primary, secondary = origins
    primary.mode = "503"
    async with await client_for(primary, secondary, forward_credentials=True) as client:
        async with client.get("/x", headers=CREDENTIALS) as resp:
            assert resp.status == 200
    assert secondary.hits[0].headers["Authorization"] == "Bearer s3cret"


async def test_a_redirect_into_the_other_origin_carries_no_credentials(origins: Any) -> None:
    primary, secondary = origins
    primary.mode, primary.redirect_to = "redirect", f"{secondary.url}/landing"
    async with await client_for(primary, secondary) as client:
        async with client.get("/x", headers=CREDENTIALS) as resp:
            assert resp.status == 200
    sent = secondary.hits[0].headers
    assert secondary.hits[0].path == "/landing"
    assert not {"Authorization", "Cookie", "Proxy-Authorization"} & set(sent)


async def test_a_session_with_default_credentials_is_refused(origins: Any) -> None:
    primary, secondary = origins
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer x"}) as session:
        with pytest.raises(ValueError, match="forward_credentials"):
            FailoverClient(primary.url, secondary.url, session=session)
        FailoverClient(primary.url, secondary.url, session=session, forward_credentials=True)


# -- events ------------------------------------------------------------------------------------


async def test_events_name_origins_never_urls(origins: Any) -> None:
    primary, secondary = origins
    primary.mode = "503"
    bus = EventBus()
    seen: list[Event] = []
    bus.add(seen.append)  # a plain callable: debug level, gets everything
    async with await client_for(primary, secondary, events=bus, unhealthy_after=1) as client:
        async with client.get("/x?token=abc", headers=CREDENTIALS) as resp:
            assert resp.status == 200
    attempts = [e for e in seen if isinstance(e, FailoverAttempt)]
    assert [(e.origin, e.to, e.method, e.reason) for e in attempts] == [
        ("primary", "secondary", "GET", "status 503")
    ]
    assert any(isinstance(e, FailoverSwitched) for e in seen)
    for event in seen:
        text = repr(event.fields())
        assert "127.0.0.1" not in text and "token" not in text and "s3cret" not in text


async def test_no_event_is_built_when_nobody_listens(
    origins: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, secondary = origins
    primary.mode = "503"
    built: list[object] = []
    import resilience.aiohttp.failover as module

    for name in ("FailoverAttempt", "FailoverSwitched"):
        real = getattr(module, name)

        def counted(*a: Any, _real: Any = real) -> Any:
            built.append(a)
            return _real(*a)

        counted.level = real.level  # type: ignore[attr-defined]  # what bus.wants reads
        monkeypatch.setattr(module, name, counted)
    async with await client_for(primary, secondary, events=EventBus(), unhealthy_after=1) as client:
        async with client.get("/x") as resp:
            assert resp.status == 200
        assert client.active == "secondary"
    assert built == []


async def test_raise_for_status_errors_fail_over_too(origins: Any) -> None:
    primary, secondary = origins
    primary.mode = "503"
    async with await client_for(primary, secondary) as client:
        async with client.get("/x", raise_for_status=True) as resp:
            assert await resp.text() == "secondary:GET:-"
        secondary.mode = "503"
        with pytest.raises(FailoverError) as caught:
            await client.get("/x", raise_for_status=True)
        assert [reason for _, reason in caught.value.failures] == ["status 503", "status 503"]


async def test_concurrent_requests_behind_a_barrier_leak_nothing(origins: Any) -> None:
    primary, secondary = origins
    primary.mode, primary.error_padding = "503", 1 << 20
    budget = RetryBudget(ratio=0.0, min_per_second=1.0, window=10.0, clock=FakeClock())  # 10
    client = await client_for(primary, secondary, budget=budget, unhealthy_after=10**6)
    barrier = asyncio.Barrier(40)

    async def one() -> int:
        await barrier.wait()
        async with client.get("/x") as resp:
            await resp.read()
            return resp.status

    async with client:
        statuses = await asyncio.gather(*(one() for _ in range(40)))
        assert acquired(client._session) == 0  # type: ignore[arg-type]
    assert statuses.count(200) == 10 == len(secondary.hits)
    assert statuses.count(503) == 30


async def test_older_aiohttp_does_not_follow_redirects_with_credentials(
    origins: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp < 3.14 kept Cookie/Proxy-Authorization on cross-origin redirects: no following."""
    import resilience.aiohttp.failover as module

    monkeypatch.setattr(module, "_AIOHTTP_STRIPS_ON_REDIRECT", False)
    primary, secondary = origins
    primary.mode, primary.redirect_to = "redirect", f"{secondary.url}/landing"
    async with await client_for(primary, secondary) as client:
        async with client.get("/x", headers=CREDENTIALS) as resp:
            assert resp.status == 302  # handed to the caller, not followed
        async with client.get("/x") as resp:  # no credentials: followed as usual
            assert resp.status == 200
    assert len(secondary.hits) == 1
    assert "Authorization" not in secondary.hits[0].headers


# -- found by probing as a demanding user ------------------------------------------------------


async def test_a_request_can_run_as_a_task_as_with_a_session(origins: Any) -> None:
    """``asyncio.create_task(session.get(...))`` works with aiohttp: so must it here."""
    primary, secondary = origins
    primary.mode = "503"
    async with await client_for(primary, secondary) as client:
        task = asyncio.create_task(client.get("/x"))
        resp = await task
        assert await resp.text() == "secondary:GET:-"
        resp.release()
        unused = client.get("/never")
        unused.close()  # a request never started can be discarded, as a coroutine can
    assert [h.path for h in primary.hits] == ["/x"]


async def test_check_health_without_a_health_path_is_a_clear_error(origins: Any) -> None:
    primary, secondary = origins
    async with await client_for(primary, secondary, health_path=None) as client:
        with pytest.raises(RuntimeError, match="health_path=None"):
            await client.check_health()
        assert client.snapshot().primary.consecutive_failures == 0


async def test_closing_the_client_under_a_request_charges_no_origin(origins: Any) -> None:
    """Our own shutdown is not an origin failure: no verdict, no breaker failure, no replay."""
    primary, secondary = origins
    primary.mode, primary.delay = "slow", 10.0
    bus = EventBus()
    seen: list[Event] = []
    bus.add(seen.append)
    client = await client_for(primary, secondary, events=bus, unhealthy_after=1)
    await client.__aenter__()
    in_flight = asyncio.create_task(client.get("/x"))
    await wait_until(lambda: len(primary.hits) == 1)
    await client.close()
    with pytest.raises(aiohttp.ClientConnectionError) as caught:
        await in_flight
    assert not isinstance(caught.value, FailoverError)
    snap = client.snapshot()
    assert snap.active == "primary" and snap.primary.consecutive_failures == 0
    assert client.breakers["primary"].snapshot().calls == 0
    assert secondary.hits == [] and seen == []


async def test_a_session_with_cookies_for_every_host_is_refused(origins: Any) -> None:
    """``ClientSession(cookies=...)`` cookies go to every host, the secondary included."""
    primary, secondary = origins
    async with aiohttp.ClientSession(cookies={"sid": "s3cret"}) as session:
        with pytest.raises(ValueError, match="cookies"):
            FailoverClient(primary.url, secondary.url, session=session)
        FailoverClient(primary.url, secondary.url, session=session, forward_credentials=True)
    async with aiohttp.ClientSession() as session:  # cookies of another site stay there
        session.cookie_jar.update_cookies({"sid": "x"}, response_url=URL("http://a.example/"))
        async with await client_for(primary, secondary, session=session) as client:
            async with client.get("/x") as resp:
                assert resp.status == 200


async def test_a_caller_cancelled_while_a_hedge_loser_winds_down_stays_cancelled(
    origins: Any,
) -> None:
    """Cancelling the caller while the race waits for its loser is not swallowed."""
    primary, secondary = origins
    primary.mode, primary.delay = "slow", 10.0
    winding_down = asyncio.Event()

    async def slow_exception_hook(session: Any, context: Any, params: Any) -> None:
        if isinstance(params.exception, asyncio.CancelledError):
            winding_down.set()
            await asyncio.sleep(0.5)  # a tracing exporter flushing, say

    trace = aiohttp.TraceConfig()
    trace.on_request_exception.append(slow_exception_hook)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client = await client_for(primary, secondary, session=session, hedge_after=0.05)
        async with client:
            caller = asyncio.create_task(client.get("/x"))
            async with asyncio.timeout(5):
                await winding_down.wait()  # the secondary won; the primary's attempt is ending
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            await wait_until(lambda: acquired(session) == 0)  # the winner was released
    assert len(secondary.hits) == 1


async def test_headers_given_as_an_iterator_reach_both_origins(origins: Any) -> None:
    """aiohttp takes any iterable of pairs; a one-shot one must not be used up by our checks."""
    primary, secondary = origins
    primary.mode = "503"
    async with await client_for(primary, secondary) as client:
        pairs = [("X-Trace", "t1"), ("Idempotency-Key", "k1"), ("Authorization", "Bearer s")]
        async with client.post("/orders", data=b"1", headers=iter(pairs)) as resp:
            assert await resp.text() == "secondary:POST:1"
        async with client.get("/x", headers=(pair for pair in pairs)) as resp:
            assert resp.status == 200
    for hit in primary.hits:
        assert (hit.headers["X-Trace"], hit.headers["Authorization"]) == ("t1", "Bearer s")
    for hit in secondary.hits:
        assert hit.headers["X-Trace"] == "t1" and "Authorization" not in hit.headers
    assert secondary.hits[0].headers["Idempotency-Key"] == "k1"
    assert len(primary.hits) == len(secondary.hits) == 2


async def test_a_request_body_that_raises_is_the_callers_error_not_the_origins(
    origins: Any,
) -> None:
    """A body generator's own bug must not open the primary's circuit or move traffic."""
    primary, secondary = origins
    async with await client_for(primary, secondary, unhealthy_after=2) as client:
        for _ in range(3):

            async def body() -> AsyncIterator[bytes]:
                yield b"part1-"
                raise ValueError("the caller's bug")

            with pytest.raises(aiohttp.ClientConnectionError) as caught:
                await client.post("/upload", data=body())
            assert isinstance(caught.value.__cause__, ValueError)
        snap = client.snapshot()
        assert snap.active == "primary" and snap.primary.consecutive_failures == 0
        assert client.breakers["primary"].snapshot().calls == 0
        assert acquired(client._session) == 0  # type: ignore[arg-type]
    assert secondary.hits == []


async def test_closing_the_client_under_a_health_check_gives_no_verdict(origins: Any) -> None:
    primary, secondary = origins
    primary.health = "blackhole"
    client = await client_for(primary, secondary, attempt_timeout=10.0, unhealthy_after=1)
    await client.__aenter__()
    check = asyncio.create_task(client.check_health())
    await wait_until(lambda: primary.health_hits == 1 and secondary.health_hits == 1)
    await client.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        await check
    snap = client.snapshot()
    assert snap.active == "primary" and snap.primary.consecutive_failures == 0


async def test_a_passed_session_closed_under_the_health_checks_stops_them_quietly(
    origins: Any,
) -> None:
    primary, secondary = origins
    primary.health = "blackhole"
    session = aiohttp.ClientSession()
    client = await client_for(
        primary, secondary, session=session, health_interval=0.05, attempt_timeout=10.0
    )
    await client.__aenter__()
    await wait_until(lambda: primary.health_hits == 1)
    await session.close()  # closed before the client (the wrong order, but it happens)
    await asyncio.sleep(0.1)
    await client.close()  # no error from the stopped checks
    assert client.snapshot().primary.consecutive_failures == 0
