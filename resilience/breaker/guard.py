"""``BreakerGuard``: protect a block of code, not a function, with a circuit breaker.

``with breaker.guard() as g:`` / ``async with breaker.aguard() as g:`` takes a
permit on entry (raising ``CircuitOpen`` when refused, unless
``refuse=False``), times the block on the breaker's clock, and on exit
reports the outcome: an exception escaping the block is classified by
``record`` / ``ignore`` (a cancelled probe fails), ``g.record(result)``
applies ``failure_if`` to a value, and ``g.fail()`` / ``g.succeed()`` set the
verdict outright (a web middleware judging a response by its status).
Entry and exit are step generators of the breaker, so the sync and async
forms share every line and a remote store is awaited only under ``async with``.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from resilience.breaker.outcome import FAILED, RELEASE, SUCCEEDED
from resilience.breaker.values import Permit
from resilience.policy import Steps, drive_async, drive_sync

if TYPE_CHECKING:
    from resilience.breaker.breaker import CircuitBreaker

__all__ = ["BreakerGuard"]

_REFUSED = Permit(False, "open", 0.0, None)  # type: ignore[arg-type]  # before entry


class BreakerGuard:
    """One guarded block: a permit, a start time and, once known, a verdict."""

    __slots__ = ("_breaker", "_refuse", "_verdict", "permit", "start")

    def __init__(self, breaker: CircuitBreaker, *, refuse: bool = True) -> None:
        self._breaker = breaker
        self._refuse = refuse
        self._verdict: int | None = None
        self.permit: Permit = _REFUSED
        self.start = 0.0

    @property
    def allowed(self) -> bool:
        """Whether the block may run (always true inside a guard that refuses)."""
        return self.permit.allowed

    def record(self, result: Any) -> Any:
        """The block produced ``result``: a failure if the breaker's ``failure_if`` says so."""
        try:
            self._verdict = self._breaker._classifier.result(result)
        except BaseException:
            self._verdict = RELEASE  # a broken predicate judges nothing
            raise
        return result

    def fail(self) -> None:
        """Count the block as failed, whatever happens next."""
        self._verdict = FAILED

    def succeed(self) -> None:
        """Count the block as succeeded, even if an exception escapes it."""
        self._verdict = SUCCEEDED

    def _enter(self) -> Steps[BreakerGuard]:
        breaker = self._breaker
        self.start = breaker._now()
        self.permit = yield from breaker._acquire(self.start, refuse=self._refuse)
        return self

    def _exit(self, exc: BaseException | None) -> Steps[None]:
        if not self.permit.allowed:
            return  # refused (refuse=False): nothing ran, nothing to report
        verdict = self._verdict
        if verdict is None:
            verdict = SUCCEEDED if exc is None else self._breaker._classifier.error(exc)
        yield from self._breaker._settle(self.permit, verdict, self.start)

    def __enter__(self) -> BreakerGuard:
        return drive_sync(self._enter(), self._breaker.clock)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        drive_sync(self._exit(exc), self._breaker.clock)

    async def __aenter__(self) -> BreakerGuard:
        return await drive_async(self._enter(), self._breaker.clock)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await drive_async(self._exit(exc), self._breaker.clock)

    def __repr__(self) -> str:
        return f"BreakerGuard({self._breaker.name!r}, permit={self.permit!r})"
