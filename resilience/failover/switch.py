"""The stateful switch: which origin takes traffic, with hysteresis (Route 53 semantics).

Each origin has a health verdict that flips only after a run of equal
observations: ``unhealthy_after`` consecutive failures make a healthy origin
unhealthy, ``healthy_after`` consecutive passes make an unhealthy one healthy
again.  Observations are active health checks and the outcomes of real
requests alike.  Traffic goes to the primary while it is healthy, else to the
secondary while *it* is healthy; when both are unhealthy traffic stays where it
is (moving it would only add churn).

Why hysteresis: an origin that alternates pass/fail never builds a run of
``unhealthy_after`` failures (when that is above 1), so traffic does not
follow its flapping; traffic moves only when a verdict flips, and one
origin's verdict flips at most once per ``min(unhealthy_after,
healthy_after)`` observations of that origin.

``observe`` is a pure function of (state, origin, outcome, now): it returns
the new state and, when the active origin changed, the :class:`Transition`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final, Literal

from resilience import _validate

__all__ = [
    "PRIMARY",
    "SECONDARY",
    "Hysteresis",
    "OriginHealth",
    "SwitchState",
    "Transition",
    "observe",
]

PRIMARY: Final = "primary"
SECONDARY: Final = "secondary"
OriginName = Literal["primary", "secondary"]


@dataclass(frozen=True, slots=True)
class Hysteresis:
    """How many equal observations in a row flip an origin's verdict."""

    unhealthy_after: int = 3
    healthy_after: int = 2

    def __post_init__(self) -> None:
        for field in ("unhealthy_after", "healthy_after"):
            value = getattr(self, field)
            _validate.whole_number(value, field)


@dataclass(frozen=True, slots=True)
class OriginHealth:
    """One origin's verdict and the current run of equal observations."""

    healthy: bool = True
    failures: int = 0  # consecutive failures (0 after a pass)
    passes: int = 0  # consecutive passes (0 after a failure), capped at healthy_after


@dataclass(frozen=True, slots=True)
class SwitchState:
    """Both origins' health, the origin taking traffic, and since when."""

    primary: OriginHealth = OriginHealth()
    secondary: OriginHealth = OriginHealth()
    active: OriginName = PRIMARY
    since: float = 0.0
    switches: int = 0

    def health(self, origin: OriginName) -> OriginHealth:
        return self.primary if origin == PRIMARY else self.secondary


@dataclass(frozen=True, slots=True)
class Transition:
    """Traffic moved from ``old`` to ``new`` because of ``reason`` at ``at``."""

    old: OriginName
    new: OriginName
    reason: str
    at: float


def _next_health(health: OriginHealth, ok: bool, rule: Hysteresis) -> OriginHealth:
    if ok:
        passes = min(health.passes + 1, rule.healthy_after)
        healthy = health.healthy or passes >= rule.healthy_after
        return OriginHealth(healthy, 0, passes)
    failures = min(health.failures + 1, rule.unhealthy_after)
    healthy = health.healthy and failures < rule.unhealthy_after
    return OriginHealth(healthy, failures, 0)


def _choose(state: SwitchState, primary: OriginHealth, secondary: OriginHealth) -> OriginName:
    if primary.healthy:
        return PRIMARY
    if secondary.healthy:
        return SECONDARY
    return state.active  # both down: stay put


def observe(
    state: SwitchState, origin: OriginName, ok: bool, now: float, rule: Hysteresis
) -> tuple[SwitchState, Transition | None]:
    """Record one observation of ``origin``; return the new state and any switch."""
    health = state.primary if origin == PRIMARY else state.secondary
    if ok and health.healthy and health.failures == 0:
        return state, None  # the steady healthy case: nothing changes, nothing allocated
    updated = _next_health(health, ok, rule)
    if updated == health:
        return state, None
    if origin == PRIMARY:
        primary, secondary = updated, state.secondary
    else:
        primary, secondary = state.primary, updated
    active = _choose(state, primary, secondary)
    if active == state.active:
        return replace(state, primary=primary, secondary=secondary), None
    verdict = "healthy" if updated.healthy else "unhealthy"
    reason = f"{origin} {verdict}"
    new_state = SwitchState(primary, secondary, active, now, state.switches + 1)
    return new_state, Transition(state.active, active, reason, now)
