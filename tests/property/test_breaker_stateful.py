"""The breaker against a plain reference model, driven by hypothesis.

The model keeps every recorded outcome of the current closed period in a
list and recounts the window from scratch at each step; it knows nothing of
sequence numbers, deques or bucket rings.  Permits are taken and finished
in any interleaving (the manual API), so late outcomes, overlapping probes
and forced transitions are all exercised.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from resilience.breaker import CircuitBreaker, CircuitState, CountWindow, Permit, TimeWindow
from resilience.errors import CircuitOpen
from resilience.events import CircuitStateChanged, EventBus
from resilience.testing import FakeClock

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
LEGAL = {  # reason -> the (old, new) pairs it may explain
    "failure_rate": {(CLOSED, OPEN)},
    "consecutive_failures": {(CLOSED, OPEN)},
    "slow_call_rate": {(CLOSED, OPEN), (HALF_OPEN, OPEN)},
    "open_duration_elapsed": {(OPEN, HALF_OPEN)},
    "probes_succeeded": {(HALF_OPEN, CLOSED)},
    "probe_failed": {(HALF_OPEN, OPEN)},
    "forced_open": {(CLOSED, OPEN), (HALF_OPEN, OPEN)},
    "forced_closed": {(OPEN, CLOSED), (HALF_OPEN, CLOSED)},
    "reset": {(OPEN, CLOSED), (HALF_OPEN, CLOSED)},
}


class Ignored(Exception):
    pass


class NotRecorded(Exception):
    pass


@dataclass
class Model:
    """A naive breaker: lists and recounts, no cleverness."""

    window: CountWindow | TimeWindow
    rate: float | None
    minimum_calls: int
    consecutive: int | None
    slow_duration: float | None
    slow_rate: float
    open_duration: float
    probes: int
    state: str = CLOSED
    held: bool = False
    epoch: int = 0
    outcomes: list[tuple[float, bool, bool]] = field(default_factory=list)  # (time, failed, slow)
    until: float = 0.0
    in_flight: int = 0
    succeeded: int = 0
    slow_probes: int = 0
    transitions: list[tuple[str, str, str]] = field(default_factory=list)

    def move(self, new: str, now: float, reason: str, held: bool = False) -> None:
        old = self.state
        self.state, self.held, self.epoch = new, held, self.epoch + 1
        self.outcomes, self.in_flight, self.succeeded, self.slow_probes = [], 0, 0, 0
        if new == OPEN:
            self.until = math.inf if held else now + self.open_duration
        if old != new:
            self.transitions.append((old, new, reason))

    def effective(self, now: float) -> str:
        return HALF_OPEN if self.state == OPEN and now >= self.until else self.state

    def in_window(self, now: float) -> list[tuple[float, bool, bool]]:
        if isinstance(self.window, CountWindow):
            return self.outcomes[-self.window.size :]
        width = self.window.seconds / self.window.buckets
        current = math.floor(now / width)
        return [
            o for o in self.outcomes if math.floor(o[0] / width) > current - self.window.buckets
        ]

    def counts(self, now: float) -> tuple[int, int, int, int]:
        recent = self.in_window(now)
        run = 0
        for _, failed, _ in reversed(self.outcomes):
            if not failed:
                break
            run += 1
        return len(recent), sum(o[1] for o in recent), sum(o[2] for o in recent), run

    def acquire(self, now: float) -> tuple[bool, float]:
        if self.state == OPEN:
            if now < self.until:
                return False, self.open_duration if self.held else self.until - now
            self.move(HALF_OPEN, now, "open_duration_elapsed")
        if self.state == HALF_OPEN:
            if self.in_flight + self.succeeded >= self.probes:
                return False, self.open_duration
            self.in_flight += 1
        return True, 0.0

    def record(self, epoch: int, failed: bool, duration: float, now: float) -> None:
        if epoch != self.epoch:
            return
        slow = self.slow_duration is not None and duration > self.slow_duration
        if self.state == HALF_OPEN:
            self.in_flight -= 1
            if failed:
                self.move(OPEN, now, "probe_failed")
                return
            self.succeeded += 1
            self.slow_probes += slow
            if self.succeeded == self.probes:
                if (
                    self.slow_duration is not None
                    and self.slow_probes / self.probes >= self.slow_rate
                ):
                    self.move(OPEN, now, "slow_call_rate")
                else:
                    self.move(CLOSED, now, "probes_succeeded")
            return
        if self.state != CLOSED:
            return
        self.outcomes.append((now, failed, slow))
        if self.held:
            return
        calls, failures, slow_calls, run = self.counts(now)
        reason = None
        if self.consecutive is not None and run >= self.consecutive:
            reason = "consecutive_failures"
        elif calls >= self.minimum_calls:
            if self.rate is not None and failures / calls >= self.rate:
                reason = "failure_rate"
            elif self.slow_duration is not None and slow_calls / calls >= self.slow_rate:
                reason = "slow_call_rate"
        if reason is not None:
            self.move(OPEN, now, reason)

    def release(self, epoch: int) -> None:
        if epoch == self.epoch and self.state == HALF_OPEN:
            self.in_flight -= 1


windows = st.one_of(
    st.builds(CountWindow, st.integers(1, 8)),
    st.builds(TimeWindow, st.sampled_from([1.0, 2.0, 5.0]), st.integers(1, 4)),
)
DURATIONS = st.sampled_from([0.0, 0.25, 0.75])


class BreakerMachine(RuleBasedStateMachine):
    @initialize(
        window=windows,
        min_frac=st.floats(0.0, 1.0),
        rate=st.sampled_from([None, 0.25, 0.5, 1.0]),
        consecutive=st.sampled_from([None, 1, 2, 3]),
        slow_duration=st.sampled_from([None, 0.5]),
        slow_rate=st.sampled_from([0.5, 1.0]),
        open_duration=st.sampled_from([1.0, 2.0]),
        probes=st.integers(1, 3),
    )
    def setup(
        self,
        window: CountWindow | TimeWindow,
        min_frac: float,
        rate: float | None,
        consecutive: int | None,
        slow_duration: float | None,
        slow_rate: float,
        open_duration: float,
        probes: int,
    ) -> None:
        if rate is None and consecutive is None and slow_duration is None:
            rate = 0.5
        cap = window.size if isinstance(window, CountWindow) else 8
        minimum_calls = 1 + int(min_frac * (cap - 1))
        self.clock = FakeClock(100.0)
        self.events: list[Any] = []
        self.breaker = CircuitBreaker(
            "model",
            failure_rate_threshold=rate,
            minimum_calls=minimum_calls,
            window=window,
            consecutive_failures=consecutive,
            slow_call_duration=slow_duration,
            slow_call_rate_threshold=slow_rate,
            open_duration=open_duration,
            half_open_max_calls=probes,
            ignore=Ignored,
            record=(ValueError,),
            failure_if=lambda result: result == "bad",
            clock=self.clock,
            events=EventBus([self.events.append]),
        )
        self.model = Model(
            window,
            rate,
            minimum_calls,
            consecutive,
            slow_duration,
            slow_rate,
            open_duration,
            probes,
        )
        self.in_flight: list[tuple[Permit, int, float]] = []

    @property
    def now(self) -> float:
        return self.clock.monotonic()

    @rule(dt=st.sampled_from([0.1, 0.5, 1.0, 2.5]))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule(outcome=st.sampled_from(["ok", "fail", "ignored", "other", "bad"]), duration=DURATIONS)
    def call(self, outcome: str, duration: float) -> None:
        allowed, retry_after = self.model.acquire(self.now)
        epoch = self.model.epoch

        def protected() -> str:
            self.clock.advance(duration)
            if outcome == "fail":
                raise ValueError("down")
            if outcome == "ignored":
                raise Ignored
            if outcome == "other":
                raise NotRecorded
            return outcome

        try:
            self.breaker.call(protected)
        except CircuitOpen as exc:
            assert not allowed
            assert exc.retry_after > 0
            assert math.isclose(exc.retry_after, retry_after, rel_tol=1e-9, abs_tol=1e-9)
            return
        except (ValueError, Ignored, NotRecorded):
            pass
        assert allowed
        if outcome == "ignored":
            self.model.release(epoch)
        else:
            self.model.record(epoch, outcome in ("fail", "bad"), duration, self.now)

    @rule(duration=DURATIONS)
    def failing_call(self, duration: float) -> None:
        """The same as ``call(outcome="fail")``, drawn more often so the circuit trips."""
        self.call("fail", duration)

    @rule(count=st.integers(1, 3))
    def start(self, count: int) -> None:
        for _ in range(count):
            permit = self.breaker.permit()
            allowed, retry_after = self.model.acquire(self.now)
            assert permit.allowed == allowed
            if allowed:
                self.in_flight.append((permit, self.model.epoch, self.now))
            else:
                assert math.isclose(permit.retry_after, retry_after, rel_tol=1e-9, abs_tol=1e-9)

    @rule(data=st.data(), outcome=st.sampled_from(["ok", "ok", "fail", "release"]))
    def finish(self, data: st.DataObject, outcome: str) -> None:
        if not self.in_flight:
            return
        i = data.draw(st.integers(0, len(self.in_flight) - 1))
        permit, epoch, started = self.in_flight.pop(i)
        duration = self.now - started
        if outcome == "release":
            self.breaker.release(permit)
            self.model.release(epoch)
        elif outcome == "ok":
            self.breaker.on_success(permit, duration)
            self.model.record(epoch, False, duration, self.now)
        else:
            self.breaker.on_failure(permit, duration)
            self.model.record(epoch, True, duration, self.now)

    @rule(action=st.sampled_from(["force_open", "force_closed", "reset"]))
    def operator(self, action: str) -> None:
        """Operator controls, as one rule so they do not crowd out the traffic."""
        getattr(self.breaker, action)()
        if action == "force_open":
            self.model.move(OPEN, self.now, "forced_open", held=True)
        elif action == "force_closed":
            self.model.move(CLOSED, self.now, "forced_closed", held=True)
        else:
            self.model.move(CLOSED, self.now, "reset")

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "model"):
            return
        now = self.now
        assert self.breaker.state == CircuitState(self.model.effective(now))
        snap = self.breaker.snapshot()
        assert snap.state == self.model.effective(now)
        if self.model.state == CLOSED:
            calls, failures, slow, run = self.model.counts(now)
            assert (snap.calls, snap.failures, snap.slow_calls) == (calls, failures, slow)
            assert snap.consecutive_failures == run
            assert snap.held == self.model.held
        elif self.model.state == HALF_OPEN:
            assert snap.probes_in_flight == self.model.in_flight
            assert snap.probes_succeeded == self.model.succeeded

    @invariant()
    def legal_transitions(self) -> None:
        if not hasattr(self, "model"):
            return
        seen = [(e.old, e.new, e.reason) for e in self.events]
        assert all(isinstance(e, CircuitStateChanged) for e in self.events)
        assert seen == self.model.transitions
        for old, new, reason in seen:
            assert (old, new) in LEGAL[reason]
        for before, after in itertools.pairwise(seen):
            assert after[0] == before[1]  # each change starts where the last one ended


BreakerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
test_breaker_matches_model = BreakerMachine.TestCase
