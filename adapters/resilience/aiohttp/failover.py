"""``FailoverClient``: a primary and a secondary origin behind the ``aiohttp.ClientSession`` API.

Two mechanisms, as CDNs and DNS failover use them:

- **per request** (CloudFront origin groups): a failover status, a connection
  error or an attempt timeout from the active origin is retried once on the
  other origin, for requests that may be sent twice (safe methods, or an
  ``Idempotency-Key``) with a body that can be sent twice;
- **stateful** (Route 53 health checks): active checks of ``health_path`` and
  the outcomes of real requests move traffic to the secondary after
  ``unhealthy_after`` consecutive failures and back after ``healthy_after``
  consecutive passes (see :mod:`resilience.failover.switch`).

Each origin has a :class:`~resilience.CircuitBreaker`; a ``RetryBudget``
bounds the traffic failover sends to the secondary; ``hedge_after`` races the
other origin when the first is slow.  Credentials never cross to another host
unless ``forward_credentials=True``.  See ``docs/failover.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Mapping
from types import TracebackType
from typing import Any

import aiohttp
from resilience import _validate
from resilience.aiohttp._failover_attempt import Outcome, attempt
from resilience.aiohttp._failover_options import (
    default_breaker,
    methods_option,
    refuse_session_credentials,
    seconds_option,
    statuses_option,
)
from resilience.aiohttp._failover_types import (
    FailoverError,
    FailoverRequest,
    FailoverSnapshot,
    OriginStatus,
)
from resilience.breaker import CircuitBreaker, CircuitState, MemoryBreakerStore
from resilience.breaker.values import Permit
from resilience.clock import Clock, now_function, resolve_clock
from resilience.events import EventBus, FailoverAttempt, FailoverSwitched, resolve_bus
from resilience.failover.credentials import carries_credentials, strip_credentials
from resilience.failover.eligibility import has_idempotency_key, is_replayable_body
from resilience.failover.origins import Origin, parse_origin
from resilience.failover.switch import (
    PRIMARY,
    SECONDARY,
    Hysteresis,
    OriginName,
    SwitchState,
    observe,
)
from resilience.retrying.budget import RetryBudget

__all__ = ["FailoverClient", "FailoverError", "FailoverSnapshot", "OriginStatus"]

_AIOHTTP_STRIPS_ON_REDIRECT = tuple(int(p) for p in aiohttp.__version__.split(".")[:2]) >= (3, 14)
"""aiohttp >= 3.14 drops Authorization, Cookie, Proxy-Authorization and cookies= on a
cross-origin redirect; with older versions a credentialed request does not follow redirects."""

_OTHER: dict[OriginName, OriginName] = {PRIMARY: SECONDARY, SECONDARY: PRIMARY}


class FailoverClient:
    """An async HTTP client for a primary and a secondary origin; see the module doc.

    Use it as an async context manager: entering creates (or adopts) the
    session and starts the health checks, leaving stops them and closes the
    session if the client created it.  Paths are relative to the origins'
    base URLs: ``client.get("/items", params={...})``.
    """

    def __init__(
        self,
        primary: str,
        secondary: str,
        *,
        session: aiohttp.ClientSession | None = None,
        failover_on: Collection[int] = (500, 502, 503, 504),
        methods: Collection[str] = ("GET", "HEAD", "OPTIONS"),
        attempt_timeout: float | None = None,
        health_path: str | None = "/healthz",
        health_interval: float | None = 5.0,
        unhealthy_after: int = 3,
        healthy_after: int = 2,
        budget: RetryBudget | None = None,
        hedge_after: float | None = None,
        forward_credentials: bool = False,
        breakers: tuple[CircuitBreaker, CircuitBreaker] | None = None,
        clock: Clock | None = None,
        name: str = "failover",
        events: EventBus | None = None,
    ) -> None:
        _validate.non_empty_str(name, "name")
        self.name = name
        self.primary = parse_origin(primary, "primary")
        self.secondary = parse_origin(secondary, "secondary")
        if self.primary.base == self.secondary.base:
            raise ValueError("primary and secondary must be different base URLs")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise ValueError(f"session must be an aiohttp.ClientSession or None, got {session!r}")
        self.failover_on = statuses_option(failover_on)
        self.methods = methods_option(methods)
        self.attempt_timeout = seconds_option(attempt_timeout, "attempt_timeout", allow_none=True)
        if health_path is not None and (
            not isinstance(health_path, str) or not health_path.startswith("/")
        ):
            raise ValueError(f"health_path must be a path starting with '/', got {health_path!r}")
        self.health_path = health_path
        self.health_interval = seconds_option(health_interval, "health_interval", allow_none=True)
        self.hysteresis = Hysteresis(unhealthy_after, healthy_after)
        if budget is not None and not isinstance(budget, RetryBudget):
            raise ValueError(f"budget must be a RetryBudget or None, got {budget!r}")
        self.budget = budget
        self.hedge_after = seconds_option(hedge_after, "hedge_after", allow_none=True)
        if not isinstance(forward_credentials, bool):
            raise ValueError(
                f"forward_credentials must be True or False, got {forward_credentials!r}"
            )
        self.forward_credentials = forward_credentials
        self.clock = resolve_clock(clock)
        self._now = now_function(self.clock)
        self._events = resolve_bus(events)
        if breakers is None:
            breakers = (
                default_breaker(f"{name}.primary", self.clock, self._events),
                default_breaker(f"{name}.secondary", self.clock, self._events),
            )
        if (
            not isinstance(breakers, tuple)
            or len(breakers) != 2
            or not all(isinstance(b, CircuitBreaker) for b in breakers)
            or breakers[0] is breakers[1]
        ):
            raise ValueError("breakers must be a tuple of two distinct CircuitBreaker objects")
        self.breakers: dict[OriginName, CircuitBreaker] = {
            PRIMARY: breakers[0],
            SECONDARY: breakers[1],
        }
        self._local = {  # breakers whose state lives in this process: sync calls, no await
            origin: isinstance(breaker.store, MemoryBreakerStore)
            for origin, breaker in self.breakers.items()
        }
        self._origins: dict[OriginName, Origin] = {PRIMARY: self.primary, SECONDARY: self.secondary}
        # Credentials are the primary's: stripped on the way to an origin of another host.
        self._strip_on_secondary = (
            not forward_credentials and self.primary.key != self.secondary.key
        )
        if session is not None and self._strip_on_secondary:
            refuse_session_credentials(session, self.secondary.base)
        self._session = session
        self._owns_session = session is None
        self._state = SwitchState(since=self._now())
        self._health_task: asyncio.Task[None] | None = None
        self._entered = False

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> FailoverClient:
        if self._entered:
            raise RuntimeError("FailoverClient is already open")
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise RuntimeError("the session passed to FailoverClient is closed")
            self._session = aiohttp.ClientSession()
        self._entered = True
        if self.health_interval is not None and self.health_path is not None:
            self._health_task = asyncio.create_task(
                self._health_loop(self.health_interval), name=f"{self.name}-health"
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the health checks; close the session if this client created it."""
        task, self._health_task = self._health_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._entered = False
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # -- state -------------------------------------------------------------------------

    @property
    def active(self) -> str:
        """``"primary"`` or ``"secondary"``: where requests go first."""
        return self._state.active

    def snapshot(self) -> FailoverSnapshot:
        """Both origins' health and breakers now.

        A breaker whose state lives in Redis is read synchronously here (it
        needs a sync client); in async code prefer :meth:`asnapshot`.
        """
        breakers = self.breakers
        return self._snapshot(breakers[PRIMARY].state, breakers[SECONDARY].state)

    async def asnapshot(self) -> FailoverSnapshot:
        """Async :meth:`snapshot`: reads remote breaker state without blocking the loop."""
        breakers = self.breakers
        return self._snapshot(await breakers[PRIMARY].astate(), await breakers[SECONDARY].astate())

    def _snapshot(self, primary: CircuitState, secondary: CircuitState) -> FailoverSnapshot:
        state = self._state
        breaker_states = {PRIMARY: primary, SECONDARY: secondary}

        def status(origin: OriginName) -> OriginStatus:
            health = state.health(origin)
            return OriginStatus(
                name=origin,
                label=self._origins[origin].label,
                healthy=health.healthy,
                consecutive_failures=health.failures,
                consecutive_passes=health.passes,
                breaker=str(breaker_states[origin].value),
            )

        return FailoverSnapshot(
            state.active, state.since, state.switches, status(PRIMARY), status(SECONDARY)
        )

    def _observe(self, origin: OriginName, ok: bool, why: str) -> None:
        state = self._state
        if ok:  # the steady healthy case changes nothing: skip the clock and the call
            health = state.primary if origin == PRIMARY else state.secondary
            if health.healthy and health.failures == 0:
                return
        self._state, moved = observe(state, origin, ok, self._now(), self.hysteresis)
        if moved is not None and self._events.wants(FailoverSwitched):
            self._events.emit(
                FailoverSwitched(self.name, moved.old, moved.new, f"{moved.reason} ({why})")
            )

    # -- health checks -----------------------------------------------------------------

    async def check_health(self) -> dict[str, bool]:
        """Run one round of active checks on both origins now; return each verdict."""
        session = self._require_session()
        if self.health_path is None:
            raise RuntimeError("health checks are disabled (health_path=None): nothing to check")
        primary, secondary = await asyncio.gather(
            self._probe(session, self.primary), self._probe(session, self.secondary)
        )
        self._observe(PRIMARY, primary, "health check")
        self._observe(SECONDARY, secondary, "health check")
        return {PRIMARY: primary, SECONDARY: secondary}

    async def _probe(self, session: aiohttp.ClientSession, origin: Origin) -> bool:
        """2xx and 3xx are healthy (as Route 53 reads them); anything else, or no answer, is not."""
        assert self.health_path is not None
        limit = self.attempt_timeout or min(self.health_interval or 5.0, 10.0)
        try:
            async with (
                asyncio.timeout(limit),
                session.get(origin.url(self.health_path), allow_redirects=False) as response,
            ):
                await response.read()
                return 200 <= response.status < 400
        except asyncio.CancelledError:
            raise
        except Exception:
            if session.closed:  # the client was closed under the check: no verdict
                raise
            return False

    async def _health_loop(self, interval: float) -> None:
        while True:
            try:
                await self.check_health()
            except Exception:
                session = self._session
                if session is None or session.closed:
                    return  # a passed session was closed under the checks: nothing to check
                raise
            await asyncio.sleep(interval)

    # -- the request API ---------------------------------------------------------------

    def request(self, method: str, url: str, **options: Any) -> FailoverRequest:
        """Like ``ClientSession.request``; ``url`` is a path on the origins (``"/items"``)."""
        return FailoverRequest(self._send(method.upper(), url, options))

    def get(self, url: str, **options: Any) -> FailoverRequest:
        return FailoverRequest(self._send("GET", url, options))

    def head(self, url: str, **options: Any) -> FailoverRequest:
        options.setdefault("allow_redirects", False)  # as ClientSession.head
        return FailoverRequest(self._send("HEAD", url, options))

    def options(self, url: str, **options: Any) -> FailoverRequest:
        return FailoverRequest(self._send("OPTIONS", url, options))

    def post(self, url: str, **options: Any) -> FailoverRequest:
        return FailoverRequest(self._send("POST", url, options))

    def put(self, url: str, **options: Any) -> FailoverRequest:
        return FailoverRequest(self._send("PUT", url, options))

    def patch(self, url: str, **options: Any) -> FailoverRequest:
        return FailoverRequest(self._send("PATCH", url, options))

    def delete(self, url: str, **options: Any) -> FailoverRequest:
        return FailoverRequest(self._send("DELETE", url, options))

    def _require_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or not self._entered:
            raise RuntimeError("use the FailoverClient inside 'async with client:'")
        return session

    # -- one request -------------------------------------------------------------------

    async def _send(
        self, method: str, path: str, options: dict[str, Any]
    ) -> aiohttp.ClientResponse:
        session = self._require_session()
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"url must be a path on the origins starting with '/', got {path!r}")
        headers = options.get("headers")
        if headers is not None and not isinstance(headers, Mapping | list | tuple):
            # An iterator of pairs is read once: keep its pairs for the checks and each attempt.
            headers = options["headers"] = list(headers)
        replay = is_replayable_body(options.get("data")) and (
            method in self.methods or has_idempotency_key(headers)
        )
        if not _AIOHTTP_STRIPS_ON_REDIRECT and carries_credentials(headers, options):
            options["allow_redirects"] = False
        if self.budget is not None:
            self.budget.deposit()

        first: OriginName = self._state.active
        second = _OTHER[first]
        breaker = self.breakers[first]
        permit = breaker.permit() if self._local[first] else await breaker.apermit()
        if not permit.allowed:
            # The first origin's circuit is open: the request never reached it, so it may go
            # to the other one whatever its method; if that one is open too, one clear error.
            first, second = second, first
            permit = await self.breakers[first].apermit()
            if not permit.allowed:
                raise FailoverError([(PRIMARY, "circuit open"), (SECONDARY, "circuit open")])
            replay = False  # one origin left
        if replay and self.hedge_after is not None and method in self.methods:
            return await self._race(session, first, second, permit, method, path, options)

        outcome = await self._attempt(session, first, permit, method, path, options)
        if not outcome.failed or not replay:
            return _answer([outcome])
        try:  # a cancellation while the other breaker answers (a remote store) included
            other = await self._permit_failover(first, second, method, outcome.reason or "")
            if other is None:
                return _answer([outcome])
            last = await self._attempt(session, second, other, method, path, options)
        except BaseException:
            outcome.release()
            raise
        return _answer([outcome, last])

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        origin: OriginName,
        permit: Permit,
        method: str,
        path: str,
        options: dict[str, Any],
    ) -> Outcome:
        if origin == SECONDARY and self._strip_on_secondary:
            options = _without_credentials(options)
        outcome = await attempt(
            session,
            self._origins[origin],
            self.breakers[origin],
            permit,
            self._now,
            method,
            path,
            options,
            self.attempt_timeout,
            self.failover_on,
            self._local[origin],
        )
        if outcome.failed:
            self._observe(origin, False, outcome.reason or "")
        else:
            self._observe(origin, True, "request")
        return outcome

    async def _permit_failover(
        self, first: OriginName, second: OriginName, method: str, reason: str
    ) -> Permit | None:
        """The other origin's breaker permit, if its circuit and the budget allow a failover."""
        permit = await self.breakers[second].apermit()
        if not permit.allowed:
            return None
        if self.budget is not None and not self.budget.try_spend():
            await self.breakers[second].arelease(permit)
            return None
        if self._events.wants(FailoverAttempt):
            self._events.emit(FailoverAttempt(self.name, first, second, method, reason))
        return permit

    async def _race(
        self,
        session: aiohttp.ClientSession,
        first: OriginName,
        second: OriginName,
        permit: Permit,
        method: str,
        path: str,
        options: dict[str, Any],
    ) -> aiohttp.ClientResponse:
        """Hedge: start the other origin if the first has not answered after ``hedge_after``.

        The first success wins; the loser is cancelled (its connection closed,
        its breaker permit freed) and awaited before this returns.  A failure
        that comes before the delay falls back to the ordinary failover.
        """
        pending: set[asyncio.Future[Outcome]] = {
            asyncio.ensure_future(self._attempt(session, first, permit, method, path, options))
        }
        outcomes: list[Outcome] = []  # every finished attempt, in the order they finished
        winner: Outcome | None = None
        second_started = False
        try:
            try:
                while pending and winner is None:
                    wait = None if second_started else self.hedge_after
                    done, pending = await asyncio.wait(
                        pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in done:
                        outcomes.append(task.result())
                    winner = next((o for o in outcomes if not o.failed), None)
                    if winner is None and not second_started:
                        second_started = True
                        reason = outcomes[-1].reason if done else "hedge"
                        other = await self._permit_failover(first, second, method, reason or "")
                        if other is not None:
                            pending.add(
                                asyncio.ensure_future(
                                    self._attempt(session, second, other, method, path, options)
                                )
                            )
            finally:
                await _end_losers(pending)
        except BaseException:  # the caller's cancellation included: nothing answered leaks
            for outcome in outcomes:
                outcome.release()
            raise
        if winner is None:
            return _answer(outcomes)
        for outcome in outcomes:
            if outcome is not winner:
                outcome.release()
        return _answer([winner])


def _answer(outcomes: list[Outcome]) -> aiohttp.ClientResponse:
    """The last response (detached from its outcome), an earlier one if the last attempt
    gave none, else one error: the attempt's own when there was one attempt, else a
    :class:`FailoverError` naming both.  Outcomes not answered are released."""
    chosen = next((o for o in reversed(outcomes) if o.response is not None), None)
    for outcome in outcomes:
        if outcome is not chosen:
            outcome.release()
    if chosen is not None:
        response = chosen.response
        chosen.response = None
        assert response is not None
        return response
    last = outcomes[-1]
    assert last.error is not None
    if len(outcomes) == 1:
        raise last.error
    raise FailoverError([(o.origin.name, o.reason or "error") for o in outcomes]) from last.error


def _without_credentials(options: dict[str, Any]) -> dict[str, Any]:
    stripped = {
        key: value
        for key, value in options.items()
        if key not in ("auth", "cookies", "proxy_auth", "headers")
    }
    if options.get("headers") is not None:
        stripped["headers"] = strip_credentials(options["headers"])
    return stripped


async def _end_losers(tasks: set[asyncio.Future[Outcome]]) -> None:
    """Cancel the losers and wait until they end; a loser that answered anyway is released.

    The wait does not catch a cancellation of the caller (it propagates); a
    loser still winding down then releases its answer when it ends.
    """
    for task in tasks:
        task.cancel()
        task.add_done_callback(_release_answer)
    if tasks:
        await asyncio.wait(tasks)


def _release_answer(task: asyncio.Future[Outcome]) -> None:
    if not task.cancelled() and task.exception() is None:  # a loser's error is not the caller's
        task.result().release()
