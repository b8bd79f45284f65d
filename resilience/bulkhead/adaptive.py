"""``AdaptiveBulkhead``: a bulkhead whose limit follows the dependency's latency.

Picking ``max_concurrent`` by hand is guesswork that goes stale as the
dependency, its hardware and the traffic mix change.  This bulkhead measures
each call's latency (with the injected clock) and lets a
:class:`~resilience.bulkhead.limits.LimitAlgorithm` (gradient by default,
or AIMD) move the limit between ``min_limit`` and ``max_limit``.  Queueing,
refusal and permit accounting are the plain :class:`Bulkhead`'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, ParamSpec, TypeVar

from resilience._validate import whole_number
from resilience.bulkhead.bulkhead import FULL, Bulkhead
from resilience.bulkhead.limits import AIMD, Gradient, LimitAlgorithm
from resilience.clock import Clock
from resilience.events import EventBus
from resilience.policy import CALL, Steps, drive_async, drive_sync

__all__ = ["AdaptiveBulkhead"]

P = ParamSpec("P")
R = TypeVar("R")


class AdaptiveBulkhead(Bulkhead):
    """A bulkhead with a latency-driven limit in ``[min_limit, max_limit]``.

    ``algorithm`` is ``"gradient"`` (no threshold needed), ``"aimd"`` (needs
    ``latency_threshold``) or any :class:`LimitAlgorithm` instance.  Calls
    that succeed or raise ``TimeoutError`` are samples (a timeout is an
    overload signal); other exceptions and cancellations teach nothing about
    capacity and are not sampled, but always give their slot back.
    """

    __slots__ = ("_estimate", "algorithm", "max_limit", "min_limit")

    def __init__(
        self,
        name: str,
        *,
        min_limit: int = 1,
        max_limit: int = 200,
        initial_limit: int | None = None,
        algorithm: Literal["gradient", "aimd"] | LimitAlgorithm = "gradient",
        latency_threshold: float | None = None,
        max_queue: int = 0,
        queue_timeout: float | None = None,
        clock: Clock | None = None,
        events: EventBus | None = None,
    ) -> None:
        self.min_limit = whole_number(min_limit, "min_limit", 1)
        self.max_limit = whole_number(max_limit, "max_limit", 1)
        if self.max_limit < self.min_limit:
            raise ValueError(f"max_limit ({max_limit!r}) must be >= min_limit ({min_limit!r})")
        if initial_limit is None:
            initial_limit = min(self.max_limit, max(self.min_limit, 20))
        initial = whole_number(initial_limit, "initial_limit", 1)
        if not self.min_limit <= initial <= self.max_limit:
            raise ValueError(
                f"initial_limit must be within [min_limit, max_limit], got {initial_limit!r}"
            )
        self.algorithm = _algorithm(algorithm, latency_threshold)
        super().__init__(
            name,
            max_concurrent=initial,
            max_queue=max_queue,
            queue_timeout=queue_timeout,
            clock=clock,
            events=events,
        )
        self._estimate = float(initial)

    @property
    def limit(self) -> int:
        """The concurrency limit in force now."""
        return self._limit

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = drive_sync(self._steps(), self.clock, fn, args, kwargs)
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await drive_async(self._steps(), self.clock, fn, args, kwargs)

    def _steps(self) -> Steps[Any]:  # the result is the call's
        """Take a slot (queueing if need be), CALL, and feed the latency to the algorithm."""
        verdict = self._take()
        if verdict is not None:
            if verdict is FULL:
                raise self._rejected("full")
            yield from self._queue()
        inflight = self._active
        start = self._now()
        try:
            result = yield CALL
        except TimeoutError:
            self._finish(start, inflight, dropped=True)
            raise
        except BaseException:
            self._release()
            raise
        self._finish(start, inflight, dropped=False)
        return result

    def _finish(self, start: float, inflight: int, *, dropped: bool) -> None:
        """Give the slot back and let the algorithm see the sample."""
        rtt = self._now() - start
        with self._lock:
            try:
                estimate = self.algorithm.update(self._estimate, rtt, inflight, dropped)
            except Exception:  # a faulty custom algorithm must not leak the slot
                estimate = self._estimate
            estimate = min(float(self.max_limit), max(float(self.min_limit), estimate))
            self._estimate = estimate
            self._limit = int(estimate)
            self._active -= 1
            if self._waiters:
                self._drain()

    def __repr__(self) -> str:
        return (
            f"AdaptiveBulkhead({self.name!r}, limit={self._limit}, min_limit={self.min_limit}, "
            f"max_limit={self.max_limit}, algorithm={self.algorithm!r})"
        )


def _algorithm(
    algorithm: Literal["gradient", "aimd"] | LimitAlgorithm, latency_threshold: float | None
) -> LimitAlgorithm:
    if isinstance(algorithm, LimitAlgorithm):
        return algorithm
    if algorithm == "gradient":
        return Gradient()
    if algorithm == "aimd":
        if latency_threshold is None:
            raise ValueError("latency_threshold is required with algorithm='aimd'")
        return AIMD(latency_threshold)
    raise ValueError(f"algorithm must be 'gradient', 'aimd' or a LimitAlgorithm, got {algorithm!r}")
