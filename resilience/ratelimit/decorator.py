"""``@rate_limit``: a limiter in front of a sync or async function."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from resilience import _validate
from resilience.errors import RateLimited
from resilience.policy import Policy, drive_async, drive_sync
from resilience.ratelimit.algorithms.base import check_cost
from resilience.ratelimit.limiter import RateLimiter

__all__ = ["RateLimitPolicy", "rate_limit"]

P = ParamSpec("P")
R = TypeVar("R")

KeyFunc = Callable[..., str]
CostFunc = Callable[..., float]


class RateLimitPolicy(Policy):
    """Apply a limiter per call: key and cost come from the call's arguments.

    ``wait=False`` raises :class:`RateLimited` at once when rejected;
    ``wait=True`` waits up to ``timeout`` (``None``: as long as it takes).
    A shaping limiter's admission delay is always honoured: that is the point
    of shaping.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        key: KeyFunc | str | None = None,
        cost: CostFunc | float = 1,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        if not isinstance(limiter, RateLimiter):
            raise ValueError(f"limiter must be a RateLimiter, got {limiter!r}")
        if key is not None and not (isinstance(key, str) or callable(key)):
            raise ValueError(f"key must be a string, a callable or None, got {key!r}")
        if not callable(cost):
            check_cost(cost)
        self.limiter = limiter
        self.name = limiter.name
        self._key = key
        self._cost = cost
        self.wait = bool(wait)
        self.timeout = _validate.optional_seconds(timeout, "timeout")

    def _key_and_cost(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, float]:
        key = self._key
        if key is None:
            resolved = "global"
        elif isinstance(key, str):
            resolved = key
        else:
            resolved = key(*args, **kwargs)
        cost = self._cost
        return resolved, (cost(*args, **kwargs) if callable(cost) else cost)

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        key, cost = self._key_and_cost(args, kwargs)
        limiter = self.limiter
        if not self.wait:
            decision = limiter.try_acquire(key, cost)
            if not decision[0]:
                raise RateLimited(decision, limiter.name)
            if decision.delay:
                limiter.wait_delay(key, cost, decision.delay)
            return fn(*args, **kwargs)
        steps = limiter.acquire_steps(key, cost, self.timeout)
        drive_sync(steps, limiter.clock, limiter.try_acquire, (key, cost))
        return fn(*args, **kwargs)

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        key, cost = self._key_and_cost(args, kwargs)
        limiter = self.limiter
        if not self.wait:
            decision = await limiter.atry_acquire(key, cost)
            if not decision[0]:
                raise RateLimited(decision, limiter.name)
            if decision.delay:
                await limiter.await_delay(key, cost, decision.delay)
            return await fn(*args, **kwargs)
        steps = limiter.acquire_steps(key, cost, self.timeout)
        await drive_async(steps, limiter.clock, limiter.atry_acquire, (key, cost))
        return await fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"rate_limit({self.limiter!r}, wait={self.wait}, timeout={self.timeout})"


def rate_limit(
    limiter: RateLimiter,
    key: KeyFunc | str | None = None,
    cost: CostFunc | float = 1,
    wait: bool = False,
    timeout: float | None = None,
) -> RateLimitPolicy:
    """Decorate a sync or async function (or method) with ``limiter``.

    ``key(*args, **kwargs) -> str`` picks the bucket (default ``"global"``);
    ``cost`` is a number or ``cost(*args, **kwargs)``.
    """
    return RateLimitPolicy(limiter, key=key, cost=cost, wait=wait, timeout=timeout)
