"""Per-route rate-limit rules: first match wins, else the default; a route can be exempt.

    rules=[
        Rule("/login", methods={"POST"}, limiter=login_limiter),   # stricter
        Rule("/healthz", exempt=True),                              # never limited
        Rule("/api/**", key=header("X-API-Key"), cost=1),           # default limiter, other key
    ]

Path patterns: an exact path (``/login``), a glob where ``*`` matches within
one segment, ``**`` across segments and ``{name}`` one whole segment
(``/users/{id}/posts``), or a compiled ``re.Pattern`` (full match).  Methods
are matched case-insensitively; a rule for ``GET`` also covers ``HEAD``
(frameworks answer HEAD with the GET handler, so it must not dodge the GET
limit).  Anything a rule leaves as ``None`` comes from the middleware's
defaults.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from resilience import _validate
from resilience.ratelimit.algorithms.base import check_cost
from resilience.ratelimit.decision import Decision
from resilience.ratelimit.limiter import RateLimiter
from resilience.web.headers import HeaderStyle, RateLimitHeaders, check_style
from resilience.web.problem import rate_limited_body, store_full_body
from resilience.web.readiness import require_async
from resilience.web.request_keys import ClientIP, RequestKey, as_key

__all__ = ["Route", "RouteTable", "Rule", "compile_path"]

Cost = float | Callable[[Any], float]


@dataclass(frozen=True, slots=True)
class Rule:
    """One route's rate-limit settings (``None`` fields inherit the middleware's)."""

    path: str | re.Pattern[str]
    methods: Collection[str] | None = None
    limiter: RateLimiter | None = None
    key: object = None
    cost: Cost | None = None
    exempt: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.path, str):
            if not self.path:
                raise ValueError("path must be a non-empty pattern such as '/api/**'")
        elif not isinstance(self.path, re.Pattern):
            raise ValueError(f"path must be a string pattern or re.Pattern, got {self.path!r}")
        if self.methods is not None and (
            isinstance(self.methods, str) or not all(isinstance(m, str) and m for m in self.methods)
        ):
            raise ValueError(f"methods must be a set of method names, got {self.methods!r}")
        if self.limiter is not None and not isinstance(self.limiter, RateLimiter):
            raise ValueError(f"limiter must be a RateLimiter, got {self.limiter!r}")
        if self.exempt and (self.limiter is not None or self.key is not None or self.cost):
            raise ValueError("an exempt rule takes no limiter, key or cost")


_TOKEN = re.compile(r"\*\*|\*|\{[^/{}]+\}")


def compile_path(pattern: str | re.Pattern[str]) -> Callable[[str], bool]:
    """A predicate on the request path."""
    if isinstance(pattern, re.Pattern):
        regex = pattern
    elif _TOKEN.search(pattern) is None:
        return pattern.__eq__
    else:
        parts: list[str] = []
        end = 0
        for match in _TOKEN.finditer(pattern):
            parts.append(re.escape(pattern[end : match.start()]))
            token = match.group()
            parts.append(".*" if token == "**" else "[^/]*" if token == "*" else "[^/]+")
            end = match.end()
        parts.append(re.escape(pattern[end:]))
        regex = re.compile("".join(parts), re.DOTALL)
    fullmatch = regex.fullmatch
    return lambda path: fullmatch(path) is not None


class Route:
    """What to do with a request once its rule is known."""

    __slots__ = (
        "body",
        "cost",
        "cost_fn",
        "decide_now",
        "full_body",
        "headers",
        "key",
        "key_scope",
        "limiter",
        "never_body",
        "peer_only",
    )

    def __init__(
        self, limiter: RateLimiter, key: RequestKey, cost: Cost, headers: RateLimitHeaders | None
    ) -> None:
        self.limiter = limiter
        # In-process limiters decide synchronously: no coroutine to create and await.
        self.decide_now: Callable[[str, float], Decision] | None = (
            limiter.try_acquire if limiter.in_process else None
        )
        self.key = key
        self.key_scope = key.from_scope
        # client_ip() without trusted proxies reads no header: adapters can skip building
        # a header lookup for it.
        self.peer_only = type(key) is ClientIP and not key.trusted_proxies
        if callable(cost):
            self.cost: float = 1
            self.cost_fn: Callable[[Any], float] | None = cost
        else:
            self.cost = check_cost(cost)
            self.cost_fn = None
        self.headers = headers
        self.body = rate_limited_body(limiter.name)
        self.never_body = rate_limited_body(limiter.name, never=True)
        self.full_body = store_full_body(limiter.name)


class RouteTable:
    """Rules compiled in order, plus the default route; ``resolve`` returns ``None`` for exempt."""

    __slots__ = ("_entries", "default", "limiters")

    def __init__(
        self,
        limiter: RateLimiter,
        key: object,
        cost: Cost,
        headers: HeaderStyle,
        rules: Iterable[Rule] = (),
        *,
        refund_statuses: Collection[int] = (),
    ) -> None:
        if not isinstance(limiter, RateLimiter):
            raise ValueError(f"limiter must be a RateLimiter, got {limiter!r}")
        style = check_style(headers)
        default_key = as_key(key)
        if not callable(cost):
            check_cost(cost)
        built: dict[int, RateLimitHeaders] = {}

        def headers_for(lim: RateLimiter) -> RateLimitHeaders | None:
            if style is None:
                return None
            found = built.get(id(lim))
            if found is None:
                found = RateLimitHeaders.for_algorithm(lim.name, lim.algorithm, style)
                built[id(lim)] = found
            return found

        self.default = Route(limiter, default_key, cost, headers_for(limiter))
        self.limiters: list[RateLimiter] = [limiter]
        entries: list[tuple[frozenset[str] | None, Callable[[str], bool], Route | None]] = []
        if isinstance(rules, Rule):
            raise ValueError("rules must be a list of Rule objects, not one Rule")
        for rule in rules:
            if not isinstance(rule, Rule):
                raise ValueError(f"rules must hold Rule objects, got {rule!r}")
            methods = None
            if rule.methods is not None:
                methods = frozenset(m.upper() for m in rule.methods)
                if "GET" in methods:
                    methods |= {"HEAD"}
            route: Route | None = None
            if not rule.exempt:
                lim = rule.limiter or limiter
                route = Route(
                    lim,
                    default_key if rule.key is None else as_key(rule.key, "rule key"),
                    cost if rule.cost is None else rule.cost,
                    headers_for(lim),
                )
                if lim not in self.limiters:
                    self.limiters.append(lim)
            entries.append((methods, compile_path(rule.path), route))
        self._entries = tuple(entries)
        for lim in self.limiters:
            require_async(lim, "limiter" if lim is limiter else "rule limiter")
        if refund_statuses:
            for lim in self.limiters:
                if not lim.refundable:
                    raise ValueError(
                        f"refund_statuses needs limiters that can give cost back (TokenBucket, "
                        f"GCRA, LeakyBucket); {lim.name!r} uses {type(lim.algorithm).__name__}"
                    )

    @property
    def has_rules(self) -> bool:
        return bool(self._entries)

    def resolve(self, method: str, path: str) -> Route | None:
        """The first matching rule's route (``None``: exempt), else the default."""
        for methods, matches, route in self._entries:
            if (methods is None or method in methods) and matches(path):
                return route
        return self.default


def check_statuses(values: Iterable[int], field: str) -> frozenset[int]:
    """A set of HTTP status codes (100..599)."""
    if isinstance(values, str | bytes):
        raise ValueError(f"{field} must be a collection of status codes, got {values!r}")
    statuses = frozenset(values)
    for status in statuses:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"{field} must hold HTTP status codes 100..599, got {status!r}")
    return statuses


def check_exempt(value: object) -> Callable[[Any], bool] | None:
    return _validate.callable_or_none(value, "exempt", what="callable(request) -> bool")  # type: ignore[return-value]
