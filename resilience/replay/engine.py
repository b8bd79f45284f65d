"""The replay engine: every record through every policy, on the log's own clock.

Each policy gets its own :class:`~resilience.stores.MemoryStore` table and is
driven through ``table.decide(key, cost, now)`` directly, with ``now`` taken
from the log: no real clock, no sleeping, no per-call limiter overhead.  A
record older than one already replayed (logs written at request completion
are slightly out of order) is replayed at the latest time seen and counted,
since the algorithms assume time does not run backwards.

Times are replayed relative to midnight UTC of the first record's day: epoch
seconds (~1.7e9) carry only about 0.2 microseconds of float precision, which
would blur the algorithms' exact arithmetic, while windows of a second, a
minute or an hour stay aligned to the wall clock, as the log's reader expects.
"""

from __future__ import annotations

import heapq
import itertools
import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from resilience.errors import StoreError
from resilience.ratelimit.algorithms import Algorithm, LeakyBucket
from resilience.ratelimit.decision import Decision
from resilience.replay.badlines import BadLines
from resilience.replay.keys import MAX_KEY_LENGTH
from resilience.replay.stats import DelayStats, PeakWindow, Timeline
from resilience.stores.memory import MemoryStore

__all__ = ["PolicyResult", "PolicyRun", "Replay", "ReplayClock", "ReplayResult"]

_DAY = 86_400.0


class ReplayClock:
    """The log's time: the latest timestamp replayed (stores read it to reclaim keys)."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = -math.inf

    def monotonic(self) -> float:
        return self.now


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """What one policy did with the whole log."""

    policy: str
    algorithm: Algorithm
    admitted: int
    rejected: int
    rejected_by_key: dict[str, int]
    peak: int
    peak_key: str | None
    peak_start: float
    delay: DelayStats | None
    timeline: Timeline | None
    store_refused: int

    @property
    def limit(self) -> int:
        return self.algorithm.limit

    @property
    def period(self) -> float:
        return self.algorithm.period

    @property
    def shaping(self) -> bool:
        return self.delay is not None

    def top_rejected(self, n: int) -> list[tuple[str, int]]:
        """The ``n`` keys rejected most, most first (ties by key, for stable output)."""
        return heapq.nsmallest(n, self.rejected_by_key.items(), key=lambda kv: (-kv[1], kv[0]))


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """The whole run: input facts plus one :class:`PolicyResult` per policy."""

    source: str
    input_format: str
    key: str
    requests: int
    first_time: float | None
    last_time: float | None
    out_of_order: int
    max_lag: float
    bad: BadLines
    policies: list[PolicyResult] = field(default_factory=list)


class PolicyRun:
    """One policy's table plus its running statistics."""

    __slots__ = (
        "_decide",
        "_delays",
        "_fail_open",
        "_peak",
        "_rejected",
        "_timeline",
        "admitted",
        "algorithm",
        "policy",
        "rejected",
        "store_refused",
    )

    def __init__(
        self,
        policy: str,
        algorithm: Algorithm,
        clock: ReplayClock,
        *,
        max_keys: int = 1_000_000,
        timeline: bool = False,
    ) -> None:
        self.policy = policy
        self.algorithm = algorithm
        store = MemoryStore(max_keys=max_keys, max_key_length=MAX_KEY_LENGTH)
        self._decide = store.table(algorithm, clock.monotonic, policy).decide
        shaping = isinstance(algorithm, LeakyBucket) and algorithm.mode == "shape"
        self._delays: array[float] | None = array("d") if shaping else None
        self._peak = PeakWindow(algorithm.period)
        self._rejected: dict[str, int] = {}
        self._timeline = Timeline() if timeline else None
        self._fail_open = Decision(True, algorithm.limit, 0, 0.0, 0.0)
        self.admitted = 0
        self.rejected = 0
        self.store_refused = 0

    def step(self, key: str, now: float) -> None:
        """Decide one request and record the outcome.

        A store that refuses a new key (every key still limited at
        ``max_keys``) fails open, as a :class:`RateLimiter` does by default,
        and is counted.
        """
        try:
            decision = self._decide(key, 1, now)
        except StoreError:
            self.store_refused += 1
            decision = self._fail_open
        if decision[0]:
            self.admitted += 1
            delays = self._delays
            if delays is None:
                self._peak.add(key, now)
            else:  # a shaped request reaches the backend when it leaves the queue
                delay = decision.delay
                delays.append(delay)
                self._peak.add(key, now + delay)
        else:
            self.rejected += 1
            rejected = self._rejected
            rejected[key] = rejected.get(key, 0) + 1
        if self._timeline is not None:
            self._timeline.add(now, decision[0])

    def result(self, offset: float = 0.0) -> PolicyResult:
        """The statistics so far, with times shifted back by ``offset`` to epoch seconds."""
        peak = self._peak
        timeline = self._timeline
        if timeline is not None:
            timeline.offset = offset
        return PolicyResult(
            policy=self.policy,
            algorithm=self.algorithm,
            admitted=self.admitted,
            rejected=self.rejected,
            rejected_by_key=dict(self._rejected),
            peak=peak.best,
            peak_key=peak.best_key,
            peak_start=peak.best_start + offset,
            delay=None if self._delays is None else DelayStats.of(self._delays),
            timeline=timeline,
            store_refused=self.store_refused,
        )


class Replay:
    """Feeds ``(time, key)`` records to every policy, clamping out-of-order times."""

    def __init__(
        self,
        policies: Sequence[tuple[str, Algorithm]],
        *,
        max_keys: int = 1_000_000,
        timeline: bool = False,
    ) -> None:
        if not policies:
            raise ValueError("policies must name at least one policy")
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"max_keys must be a positive integer, got {max_keys!r}")
        self.clock = ReplayClock()
        self.runs = [
            PolicyRun(name, algorithm, self.clock, max_keys=max_keys, timeline=timeline)
            for name, algorithm in policies
        ]
        self.requests = 0
        self.origin: float | None = None
        self.first_time: float | None = None
        self.out_of_order = 0
        self.max_lag = 0.0

    def feed(self, records: Iterable[tuple[float, str]]) -> None:
        """Replay ``records`` in order (may be called again with more)."""
        it = iter(records)
        if self.origin is None:
            first = next(it, None)
            if first is None:
                return
            self.origin = math.floor(first[0] / _DAY) * _DAY
            it = itertools.chain((first,), it)
        origin = self.origin
        clock = self.clock
        steps = [run.step for run in self.runs]
        latest = clock.now
        requests = self.requests
        late = self.out_of_order
        max_lag = self.max_lag
        try:
            for when, key in it:
                t = when - origin
                if t < latest:
                    late += 1
                    if latest - t > max_lag:
                        max_lag = latest - t
                    t = latest
                else:
                    latest = clock.now = t
                    if requests == 0:
                        self.first_time = when
                for step in steps:
                    step(key, t)
                requests += 1
        finally:
            self.requests = requests
            self.out_of_order = late
            self.max_lag = max_lag

    def result(self, *, source: str, input_format: str, key: str, bad: BadLines) -> ReplayResult:
        offset = self.origin or 0.0
        last = self.clock.now + offset if self.requests else None
        return ReplayResult(
            source=source,
            input_format=input_format,
            key=key,
            requests=self.requests,
            first_time=self.first_time,
            last_time=last,
            out_of_order=self.out_of_order,
            max_lag=self.max_lag,
            bad=bad,
            policies=[run.result(offset) for run in self.runs],
        )
