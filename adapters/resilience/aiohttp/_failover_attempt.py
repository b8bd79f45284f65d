"""One attempt on one origin: send, classify the outcome, feed the breaker.

An attempt never raises for an outcome the failover logic must weigh (a
failover status, a connection error, a timeout): it returns an
:class:`Outcome`.  Errors that another origin could not fix (a bad argument,
an invalid URL, the client's session closed under the request) propagate at
once.  A cancelled attempt (the loser of a hedge, a caller that gave up) frees
its breaker permit and closes its connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import aiohttp
from resilience.breaker import CircuitBreaker
from resilience.breaker.values import Permit
from resilience.failover.origins import Origin

__all__ = ["Outcome", "attempt", "close_response", "is_transport_error"]

# Errors another origin may not have: refused, reset, DNS, TLS, a server that hung up.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    aiohttp.ServerDisconnectedError,
    TimeoutError,
    OSError,
)


def is_transport_error(exc: BaseException) -> bool:
    return (
        isinstance(exc, TRANSPORT_ERRORS)
        and not isinstance(exc, aiohttp.InvalidURL)
        and not raised_by_the_body(exc)
    )


def raised_by_the_body(exc: BaseException) -> bool:
    """The caller's request body raised while it was sent (a generator's own bug, say).

    aiohttp reports that as a ``ClientConnectionError`` caused by the body's
    exception; it says nothing about the origin, so it must not count against it.
    """
    cause = exc.__cause__
    return (
        isinstance(exc, aiohttp.ClientConnectionError)
        and cause is not None
        and not isinstance(cause, TRANSPORT_ERRORS)
    )


@dataclass(slots=True)
class Outcome:
    """What one origin answered: a response (possibly a failover status) or an error."""

    origin: Origin
    response: aiohttp.ClientResponse | None
    error: BaseException | None
    reason: str | None  # why it counts as a failure, None when it is a success

    @property
    def failed(self) -> bool:
        return self.reason is not None

    def release(self) -> None:
        if self.response is not None:
            close_response(self.response)
            self.response = None


def close_response(response: aiohttp.ClientResponse) -> None:
    """Give the connection back to the pool, or close it when the body was not read.

    aiohttp's ``release()`` does both: a connection whose body is unread is
    closed rather than reused, so nothing leaks and nothing is read by accident.
    """
    response.release()


async def attempt(
    session: aiohttp.ClientSession,
    origin: Origin,
    breaker: CircuitBreaker,
    permit: Permit,
    now: Callable[[], float],
    method: str,
    path: str,
    options: dict[str, Any],
    timeout: float | None,
    failover_on: Collection[int],
    local: bool,
) -> Outcome:
    """Send the request to ``origin`` under ``permit``; record the outcome in ``breaker``.

    ``local``: the breaker keeps its state in this process, so its synchronous
    methods are used (no await per call on the happy path).
    """
    start = now()
    try:
        if timeout is None:
            response = await session.request(method, origin.url(path), **options)
        else:
            async with asyncio.timeout(timeout):
                response = await session.request(method, origin.url(path), **options)
    except asyncio.CancelledError:
        await breaker.arelease(permit)
        raise
    except aiohttp.ClientResponseError as exc:  # raise_for_status=True
        if exc.status in failover_on:
            await breaker.aon_failure(permit, now() - start)
            return Outcome(origin, None, exc, f"status {exc.status}")
        await breaker.aon_success(permit, now() - start)
        raise
    except Exception as exc:
        if session.closed:  # the client was closed under this request: not the origin's fault
            await breaker.arelease(permit)
            raise
        if is_transport_error(exc):
            await breaker.aon_failure(permit, now() - start)
            kind = "timeout" if isinstance(exc, TimeoutError) else "connection error"
            return Outcome(origin, None, exc, kind)
        await breaker.arelease(permit)
        raise
    try:  # a remote breaker store is awaited: a cancellation there must not leak the response
        if response.status in failover_on:
            await breaker.aon_failure(permit, now() - start)
            return Outcome(origin, response, None, f"status {response.status}")
        if local:
            breaker.on_success(permit, now() - start)
        else:
            await breaker.aon_success(permit, now() - start)
    except BaseException:
        close_response(response)
        raise
    return Outcome(origin, response, None, None)
