"""The fault script: what the primary payments origin does, phase by phase.

Phases are fractions of the run, so ``--duration 10`` and ``--duration 40``
tell the same story at different speeds.  The secondary origin is always
healthy (a farther region: slower, never down).  Random choices (which
request gets a latency spike, which gets a 503) come from a seeded
``random.Random``, so a run is reproducible up to the machine's timing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

__all__ = ["Fault", "Phase", "Scenario"]

FaultKind = Literal["ok", "slow", "error", "down"]


@dataclass(frozen=True, slots=True)
class Phase:
    """One stretch of the run, ``start``..``end`` seconds from the start."""

    name: str
    start: float
    end: float
    story: str


@dataclass(frozen=True, slots=True)
class Fault:
    """What one request to an origin gets: ``delay`` seconds, then ``kind``."""

    kind: FaultKind
    delay: float


# (name, fraction of the run it ends at, what happens)
_SCRIPT = (
    ("calm", 0.15, "both origins healthy; the primary serves"),
    ("latency", 0.32, "latency spikes on the primary: some charges take over a second"),
    ("errors", 0.42, "a burst of 503s from the primary"),
    ("calm-2", 0.48, "the primary answers again"),
    ("outage", 0.72, "full outage of the primary: every connection is dropped"),
    ("recovery", 1.0, "the primary is back"),
)


class Scenario:
    """The phases of a run of ``duration`` seconds and the faults they inject."""

    def __init__(self, duration: float, seed: int) -> None:
        if not duration > 0:
            raise ValueError(f"duration must be positive, got {duration!r}")
        self.duration = float(duration)
        self.seed = seed
        phases: list[Phase] = []
        start = 0.0
        for name, end_fraction, story in _SCRIPT:
            end = round(end_fraction * duration, 3)
            phases.append(Phase(name, start, end, story))
            start = end
        self.phases = tuple(phases)
        self._rng = random.Random(f"faults-{seed}")

    def phase_at(self, t: float) -> Phase:
        """The phase running ``t`` seconds after the start (the last one after the end)."""
        for phase in self.phases:
            if t < phase.end:
                return phase
        return self.phases[-1]

    def phase(self, name: str) -> Phase:
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(name)

    def fault(self, origin: str, t: float, health_check: bool = False) -> Fault:
        """The behaviour of ``origin`` for a request arriving at ``t``."""
        rng = self._rng
        if origin != "primary":
            return Fault("ok", 0.010 + 0.015 * rng.random())
        name = self.phase_at(t).name
        if name == "outage":
            return Fault("down", 0.0)
        if health_check:  # a partial failure: the load balancer's probe still passes
            return Fault("ok", 0.002)
        if name == "latency" and rng.random() < 0.45:
            if rng.random() < 0.5:  # slow but within the API's attempt timeout (0.7 s)
                return Fault("slow", 0.55 + 0.12 * rng.random())
            return Fault("slow", 0.9 + 0.5 * rng.random())  # past it: the API fails over
        if name == "errors" and rng.random() < 0.85:
            return Fault("error", 0.005)
        return Fault("ok", 0.004 + 0.010 * rng.random())
