"""What the traffic generator saw: one sample per response, and windows over them.

Memory is bounded by the run (a 60-second run makes a few thousand
samples).  Samples are appended in completion order, so a time window is two
bisections.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass

__all__ = ["OUTCOMES", "Metrics", "Sample", "classify", "percentile"]

OUTCOMES = ("2xx", "replayed", "429", "503", "409", "timeout", "4xx", "5xx")
"""How a response ended: ``replayed`` is a 2xx with ``Idempotent-Replayed: true``;
``409`` the same key still running; ``timeout`` the client gave up waiting or
lost the connection; ``5xx`` anything 5xx but 503 (the verdict wants none)."""


def classify(status: int, replayed: bool) -> str:
    if 200 <= status < 300:
        return "replayed" if replayed else "2xx"
    if status in (429, 503, 409):
        return str(status)
    if status >= 500:
        return "5xx"
    return "4xx"


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # seconds since the start, when the response (or the timeout) came
    client: str
    method: str
    outcome: str
    latency: float


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


class Metrics:
    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self._times: list[float] = []

    def record(self, t: float, client: str, method: str, outcome: str, latency: float) -> None:
        # Completions come in time order; one that is a hair earlier is placed where it belongs.
        index = bisect.bisect_right(self._times, t)
        self._times.insert(index, t)
        self.samples.insert(index, Sample(t, client, method, outcome, latency))

    def window(self, start: float, end: float) -> list[Sample]:
        """Samples completed in ``[start, end)``."""
        lo = bisect.bisect_left(self._times, start)
        hi = bisect.bisect_left(self._times, end)
        return self.samples[lo:hi]

    def counts(self, start: float, end: float) -> Counter[str]:
        return Counter(sample.outcome for sample in self.window(start, end))

    def latencies(self, start: float, end: float) -> list[float]:
        """Latencies of requests past the rate limiter (a 429 costs microseconds; a
        timeout says nothing about the server's speed)."""
        return [s.latency for s in self.window(start, end) if s.outcome not in ("429", "timeout")]
