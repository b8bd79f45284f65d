"""Policy strings: ``"gcra:100/minute,burst=20"`` to an algorithm and back.

Used by the ``resilience replay`` command and by configuration files.  The
grammar is ``<algorithm>:<rate>[,<option>=<value>...]`` where the rate is
anything :func:`parse_rate` accepts.
"""

from __future__ import annotations

from collections.abc import Callable

from resilience.ratelimit.algorithms import (
    GCRA,
    Algorithm,
    FixedWindow,
    LeakyBucket,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from resilience.ratelimit.rate import parse_rate

__all__ = ["ALGORITHMS", "parse_policy"]


def _int_option(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"option {name}={value!r} must be a whole number") from None


def _build(
    cls: type[Algorithm], allowed: tuple[str, ...], **fixed: str
) -> Callable[..., Algorithm]:
    def build(limit: int, period: float, options: dict[str, str]) -> Algorithm:
        unknown = set(options) - set(allowed)
        if unknown:
            raise ValueError(
                f"{cls.kind} does not take option(s) {sorted(unknown)}; "
                f"it takes {list(allowed) or 'none'}"
            )
        kwargs: dict[str, object] = dict(fixed)
        for name, value in options.items():
            kwargs[name] = value if name == "mode" else _int_option(name, value)
        return cls(limit, period, **kwargs)  # type: ignore[call-arg]

    return build


ALGORITHMS: dict[str, Callable[[int, float, dict[str, str]], Algorithm]] = {
    "token-bucket": _build(TokenBucket, ("burst",)),
    "gcra": _build(GCRA, ("burst",)),
    "leaky-bucket": _build(LeakyBucket, ("capacity", "mode")),
    "leaky-police": _build(LeakyBucket, ("capacity",), mode="police"),
    "leaky-shape": _build(LeakyBucket, ("capacity",), mode="shape"),
    "fixed-window": _build(FixedWindow, ()),
    "sliding-log": _build(SlidingWindowLog, ()),
    "sliding-counter": _build(SlidingWindowCounter, ("buckets",)),
}
_ALIASES = {
    "fixed": "fixed-window",
    "token": "token-bucket",
    "leaky": "leaky-bucket",
    "sliding-window-log": "sliding-log",
    "sliding-window-counter": "sliding-counter",
    "moving-window": "sliding-log",
}


def parse_policy(text: str) -> Algorithm:
    """Build the algorithm a policy string names, e.g. ``"sliding-counter:10/s,buckets=4"``."""
    if not isinstance(text, str) or ":" not in text:
        raise ValueError(f"policy {text!r} must look like '<algorithm>:<rate>[,option=value]'")
    name, _, rest = text.partition(":")
    name = name.strip().lower().replace("_", "-")
    name = _ALIASES.get(name, name)
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(sorted(ALGORITHMS))}")
    rate, *option_parts = rest.split(",")
    limit, period = parse_rate(rate)
    options: dict[str, str] = {}
    for part in option_parts:
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or not key or not value.strip():
            raise ValueError(f"policy {text!r}: option {part!r} must be name=value")
        if key in options:
            raise ValueError(f"policy {text!r}: option {key!r} given twice")
        options[key] = value.strip()
    return ALGORITHMS[name](limit, period, options)
