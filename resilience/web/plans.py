"""Per-plan limits: the limiter is picked per request, e.g. from the principal's plan.

    plans = PlanLimits(
        plan=lambda scope: scope["state"].get("plan"),       # or request["plan"] in aiohttp
        limiters={"free": free_limiter, "paid": paid_limiter},
        default="free",
    )
    app = RateLimitMiddleware(app, plans, key=header("X-API-Key"))

A free trial is limited harder than a paid plan, but both are one middleware:
each plan's limiter gets its own route table (same key, cost, header style and
rules), so a rule without a limiter of its own uses the plan's, and the IETF
``RateLimit-Policy`` header names the limiter that applied (its ``name``).
A request whose plan is ``None`` or unknown gets ``default``: an unknown plan
is limited like the most common (usually the strictest) one, never unlimited.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from resilience.ratelimit.limiter import RateLimiter

__all__ = ["PlanLimits", "PlanTables"]

T = TypeVar("T")


class PlanLimits:
    """``plan(request) -> str | None`` names one of ``limiters``; ``default`` covers the rest."""

    __slots__ = ("default", "limiters", "plan")

    def __init__(
        self,
        plan: Callable[[Any], object],
        limiters: Mapping[str, RateLimiter],
        *,
        default: str,
    ) -> None:
        if not callable(plan):
            raise ValueError(f"plan must be a callable(request) -> str | None, got {plan!r}")
        if not isinstance(limiters, Mapping) or not limiters:
            raise ValueError(
                f"limiters must be a non-empty mapping of plan names, got {limiters!r}"
            )
        for name, limiter in limiters.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"limiters keys must be non-empty plan names, got {name!r}")
            if not isinstance(limiter, RateLimiter):
                raise ValueError(f"limiters[{name!r}] must be a RateLimiter, got {limiter!r}")
        if default not in limiters:
            raise ValueError(
                f"default must be one of the plans {sorted(limiters)}, got {default!r}"
            )
        self.plan = plan
        self.limiters: dict[str, RateLimiter] = dict(limiters)
        self.default = default

    def compile(self, build: Callable[[RateLimiter], T]) -> PlanTables[T]:
        """One ``build(limiter)`` per plan (a limiter shared by two plans is built once)."""
        built: dict[int, T] = {}
        tables: dict[str, T] = {}
        for name, limiter in self.limiters.items():
            if id(limiter) not in built:
                built[id(limiter)] = build(limiter)
            tables[name] = built[id(limiter)]
        return PlanTables(self.plan, tables, tables[self.default])

    def __repr__(self) -> str:
        return f"PlanLimits({sorted(self.limiters)}, default={self.default!r})"


class PlanTables(Generic[T]):
    """What a middleware keeps: the compiled object per plan; ``pick(request)`` chooses."""

    __slots__ = ("_default", "_plan", "_tables")

    def __init__(self, plan: Callable[[Any], object], tables: dict[str, T], default: T) -> None:
        self._plan = plan
        self._tables = tables
        self._default = default

    def pick(self, request: Any) -> T:
        """The plan's table; ``None``, an unknown name or a non-string gets the default."""
        name = self._plan(request)
        if type(name) is not str:
            return self._default
        return self._tables.get(name, self._default)
