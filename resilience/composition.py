"""``compose``: stack policies into one, the first outermost.

``compose(timeout(2), retry(...), breaker, bulkhead, limiter)`` reads like the
call path: the timeout bounds everything, each retry goes through the
breaker, the bulkhead and the limiter.  Order matters and is the caller's
choice; a common one is fallback, timeout, retry, breaker, bulkhead, limiter.

Nested compositions are flattened, so ``compose(a, compose(b, c))`` is
``compose(a, b, c)``.  The result is itself a :class:`Policy`: it has
``call``/``acall``, works as a decorator and can be composed again.  Any
``Policy`` is a member (a ``RateLimiter``, a circuit breaker, your own).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, ParamSpec, TypeVar, cast

from resilience import _validate
from resilience.policy import Policy

__all__ = ["Composition", "compose"]

P = ParamSpec("P")
R = TypeVar("R")


class Composition(Policy):
    """Policies applied in order, the first outermost; see :func:`compose`."""

    __slots__ = ("_count", "name", "policies")

    def __init__(self, *policies: Policy, name: str | None = None) -> None:
        flat: list[Policy] = []
        for index, policy in enumerate(policies):
            if isinstance(policy, Composition):
                flat.extend(policy.policies)
            elif isinstance(policy, Policy):
                flat.append(policy)
            else:
                raise ValueError(f"policies[{index}] must be a resilience Policy, got {policy!r}")
        _validate.optional_non_empty_str(name, "name")
        self.policies: tuple[Policy, ...] = tuple(flat)
        self._count = len(flat)
        self.name = name or "compose(" + ", ".join(p.name for p in flat) + ")"

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` through every policy, the first outermost."""
        return cast(R, self._layer(0, fn, args, kwargs))

    def _layer(
        self, index: int, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if index == self._count:
            return fn(*args, **kwargs)
        # Each layer hands the next one to its policy as "the call", so a retry
        # re-runs everything inside it on every attempt.
        return self.policies[index].call(self._layer, index + 1, fn, args, kwargs)

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn`` through every policy, the first outermost."""
        return cast(R, await self._alayer(0, fn, args, kwargs))

    async def _alayer(
        self,
        index: int,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if index == self._count:
            return await fn(*args, **kwargs)
        return await self.policies[index].acall(self._alayer, index + 1, fn, args, kwargs)

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.policies)

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return "compose(" + ", ".join(repr(p) for p in self.policies) + ")"


def compose(*policies: Policy) -> Composition:
    """One policy from several; the first is outermost and nested compositions flatten."""
    return Composition(*policies)
