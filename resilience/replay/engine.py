"""The replay engine: every record through every policy, on the log's own clock.

Each policy gets its own :class:`~resilience.ratelimit.memory_store.MemoryStore` table and is
driven through ``table.decide(key, cost, now)`` directly, with ``now`` taken
from the log: no real clock, no sleeping, no per-call limiter overhead.

Access logs are written when a request *completes*, so their lines run out of
order by up to the longest request (the public Apache sample of May 2015: 94 %
of lines, by up to 59 s).  Replaying them in file order would have to clamp
each older line to the latest time seen, squeezing traffic into bursts the
server never saw.  So records go through a reorder buffer first, ordered by
``(time, record number)``, that releases a record once the newest time read
is ``reorder_window`` seconds past it: a heap for the records older than the
newest (the out-of-order ones), and beside it a deque for the records that are
the newest so far (most lines), which arrive sorted and cost no heap work.
Any record displaced by at most the window is then replayed exactly where a
stable sort by time would put it, and memory holds only the records of one
window.  A record older than one
already replayed (later than the window) cannot be put back; it is replayed
at the replay's current time, since the algorithms assume time does not run
backwards, and counted as ``late``.

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
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from resilience import _validate
from resilience.errors import StoreError
from resilience.ratelimit.algorithms import Algorithm, LeakyBucket
from resilience.ratelimit.decision import Decision
from resilience.ratelimit.memory_store import MemoryStore
from resilience.replay.badlines import BadLines
from resilience.replay.key_spec import MAX_KEY_LENGTH
from resilience.replay.stats import DelayStats, PeakWindow, Timeline

__all__ = [
    "DEFAULT_REORDER_WINDOW",
    "PolicyResult",
    "PolicyRun",
    "Replay",
    "ReplayClock",
    "ReplayResult",
]

_DAY = 86_400.0

DEFAULT_REORDER_WINDOW = 120.0
"""Seconds of log time a line may trail the newest line and still be replayed in order.

Two minutes covers servers' usual request timeouts (60 s in Apache and nginx);
longer lines are counted as late and the report names the window that would fit.
"""


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
    """The whole run: input facts plus one :class:`PolicyResult` per policy.

    ``out_of_order`` counts lines older than a line above them and ``max_lag``
    is the most one trailed (facts of the file); ``late`` counts the lines that
    trailed by more than ``reorder_window`` and were replayed late, squeezed to
    the replay's time; ``buffer_peak`` is the most lines the buffer held.
    """

    source: str
    input_format: str
    key: str
    requests: int
    first_time: float | None
    last_time: float | None
    out_of_order: int
    max_lag: float
    bad: BadLines
    reorder_window: float = DEFAULT_REORDER_WINDOW
    late: int = 0
    buffer_peak: int = 0
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
    """Feeds ``(time, key)`` records to every policy in time order, through a reorder buffer."""

    def __init__(
        self,
        policies: Sequence[tuple[str, Algorithm]],
        *,
        max_keys: int = 1_000_000,
        timeline: bool = False,
        reorder_window: float = DEFAULT_REORDER_WINDOW,
    ) -> None:
        if not policies:
            raise ValueError("policies must name at least one policy")
        _validate.whole_number(max_keys, "max_keys")
        if (
            isinstance(reorder_window, bool)
            or not isinstance(reorder_window, int | float)
            or not 0.0 <= reorder_window < math.inf
        ):
            raise ValueError(
                f"reorder_window must be a finite number of seconds >= 0, got {reorder_window!r}"
            )
        self.reorder_window = float(reorder_window)
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
        self.late = 0
        self.buffer_peak = 0
        # The buffer: records in file order that are the newest so far (most of
        # them) append to a deque that stays sorted; older ones go to a heap.
        # Both hold (time, record number, key): equal times keep their file order.
        self._tail: deque[tuple[float, int, str]] = deque()
        self._heap: list[tuple[float, int, str]] = []
        self._read = 0  # records read: the tie-break that keeps equal times in file order
        self._newest = -math.inf  # the newest time read (the clock holds the newest replayed)
        self._earliest: float | None = None  # the first replayed time, relative to origin

    def feed(self, records: Iterable[tuple[float, str]]) -> None:
        """Take ``records`` in file order; replay those the window has passed (call again for more).

        Records still inside the window stay buffered until more records push
        the newest time past them, or :meth:`flush` (which :meth:`result` calls).
        """
        it = iter(records)
        if self.origin is None:
            first = next(it, None)
            if first is None:
                return
            self.origin = math.floor(first[0] / _DAY) * _DAY
            it = itertools.chain((first,), it)
        origin = self.origin
        window = self.reorder_window
        clock = self.clock
        steps = [run.step for run in self.runs]
        tail = self._tail
        heap = self._heap
        push = heapq.heappush
        pop = heapq.heappop
        newest = self._newest
        replayed = clock.now
        earliest = self._earliest
        read = self._read
        requests = self.requests
        disorder = self.out_of_order
        max_lag = self.max_lag
        late = self.late
        peak = self.buffer_peak
        # Invariant: every buffered record is later than newest - window, and no
        # replayed one is.  So a record at or before that edge can be replayed at
        # once (nothing buffered comes before it), and one older than the last
        # replayed record is late: it is replayed at the replay's time.
        try:
            for when, key in it:
                t = when - origin
                if t < newest:
                    disorder += 1
                    if newest - t > max_lag:
                        max_lag = newest - t
                    if t < replayed:
                        late += 1
                        t = replayed
                else:
                    newest = t
                edge = newest - window
                if t <= edge:
                    if earliest is None:
                        earliest = t
                    clock.now = replayed = t
                    for step in steps:
                        step(key, t)
                    requests += 1
                    read += 1
                    continue
                if t == newest:  # in order (most lines): the tail stays sorted by itself
                    tail.append((t, read, key))
                else:
                    push(heap, (t, read, key))
                read += 1
                if len(tail) + len(heap) > peak:
                    peak = len(tail) + len(heap)
                while True:  # replay, in (time, read) order, what the edge has passed
                    if tail and tail[0][0] <= edge and (not heap or tail[0] < heap[0]):
                        t, _, key = tail.popleft()
                    elif heap and heap[0][0] <= edge:
                        t, _, key = pop(heap)
                    else:
                        break
                    if earliest is None:
                        earliest = t
                    clock.now = replayed = t
                    for step in steps:
                        step(key, t)
                    requests += 1
        finally:
            self._newest = newest
            self._read = read
            self.requests = requests
            self._earliest = earliest
            self.first_time = None if earliest is None else earliest + origin
            self.out_of_order = disorder
            self.max_lag = max_lag
            self.late = late
            self.buffer_peak = peak

    def flush(self) -> None:
        """Replay every buffered record, in (time, record number) order: the end of the input."""
        tail, heap = self._tail, self._heap
        steps = [run.step for run in self.runs]
        while tail or heap:
            if tail and (not heap or tail[0] < heap[0]):
                t, _, key = tail.popleft()
            else:
                t, _, key = heapq.heappop(heap)
            if self._earliest is None and self.origin is not None:
                self._earliest = t
                self.first_time = t + self.origin
            self.clock.now = t
            for step in steps:
                step(key, t)
            self.requests += 1

    def result(self, *, source: str, input_format: str, key: str, bad: BadLines) -> ReplayResult:
        """The statistics of everything fed so far (buffered records are replayed first)."""
        self.flush()
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
            reorder_window=self.reorder_window,
            late=self.late,
            buffer_peak=self.buffer_peak,
            policies=[run.result(offset) for run in self.runs],
        )
