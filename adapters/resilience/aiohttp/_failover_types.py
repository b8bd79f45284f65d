"""What the failover client hands back: its error, its snapshot, the request context manager."""

from __future__ import annotations

from collections.abc import Coroutine, Generator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
from resilience.errors import ResilienceError

__all__ = ["FailoverError", "FailoverRequest", "FailoverSnapshot", "OriginStatus"]


class FailoverError(ResilienceError, aiohttp.ClientConnectionError):
    """No origin gave an answer: every attempt failed with an error (or was refused).

    ``failures`` lists ``(origin name, reason)`` per attempt; the last error is
    chained as ``__cause__``.  It is an ``aiohttp.ClientConnectionError`` too,
    so code written for a bare session keeps catching it.
    """

    def __init__(self, failures: Iterable[tuple[str, str]]) -> None:
        self.failures = tuple(failures)
        text = "; ".join(f"{origin}: {reason}" for origin, reason in self.failures)
        super().__init__(f"no origin answered ({text})")


@dataclass(frozen=True, slots=True)
class OriginStatus:
    """One origin as the client sees it (``label`` is scheme://host:port, nothing more)."""

    name: str
    label: str
    healthy: bool
    consecutive_failures: int
    consecutive_passes: int
    breaker: str


@dataclass(frozen=True, slots=True)
class FailoverSnapshot:
    """Which origin takes traffic, since when (clock time), and both origins' health."""

    active: str
    since: float
    switches: int
    primary: OriginStatus
    secondary: OriginStatus


class FailoverRequest(Coroutine[Any, Any, aiohttp.ClientResponse]):
    """What ``client.get(...)`` returns: awaitable, or ``async with`` (releases on exit).

    A coroutine, as aiohttp's own request context manager is, so that
    ``asyncio.create_task(client.get(...))`` works as it does with a session.
    """

    __slots__ = ("_coro", "_response")

    def __init__(self, coro: Coroutine[Any, Any, aiohttp.ClientResponse]) -> None:
        self._coro = coro
        self._response: aiohttp.ClientResponse | None = None

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, *args: Any, **kwargs: Any) -> Any:
        return self._coro.throw(*args, **kwargs)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, aiohttp.ClientResponse]:
        return self._coro.__await__()

    async def __aenter__(self) -> aiohttp.ClientResponse:
        self._response = await self._coro
        return self._response

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        response = self._response
        if response is not None:
            response.release()
            await response.wait_for_close()
