"""The in-process state machine: one class per state, each a fresh epoch.

A state object lives from the transition that created it to the next one.
Permits carry the object that issued them as their token, so an outcome
that arrives after its state ended (a slow call finishing after the circuit
opened, a probe from an earlier half-open round) is recognised by identity
and ignored.  Transitions go through the owning table's ``enter``, always
under its lock; the only lock-free method is :meth:`ClosedState.success`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Protocol

from resilience.breaker.decider import PROBE_FAILED
from resilience.breaker.metrics import new_metrics
from resilience.breaker.values import BreakerSnapshot, CircuitState, Permit, Transition

if TYPE_CHECKING:
    from resilience.breaker.config import BreakerConfig

__all__ = [
    "OPEN_DURATION_ELAPSED",
    "PROBES_SUCCEEDED",
    "BreakerContext",
    "ClosedState",
    "HalfOpenState",
    "OpenState",
    "State",
    "new_state",
]

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
_new = tuple.__new__  # builds a Permit without NamedTuple's Python-level __new__
OPEN_DURATION_ELAPSED = "open_duration_elapsed"
PROBES_SUCCEEDED = "probes_succeeded"


class BreakerContext(Protocol):
    """What a state needs from its table: the config, the clock, and a way to move on."""

    config: BreakerConfig
    current: State

    def now(self) -> float: ...

    def enter(self, kind: CircuitState, now: float, reason: str, held: bool = False) -> Transition:
        """Replace the current state (caller holds the lock)."""
        ...

    def judge(self, state: ClosedState, seq: int) -> Transition | None:
        """Take the lock and let ``state`` decide, if it is still current."""
        ...


class State:
    """Behaviour shared by the three states; every method but ``effective`` runs under the lock."""

    __slots__ = ("ctx", "free_permit", "held")

    kind: ClassVar[CircuitState]

    def __init__(self, ctx: BreakerContext, held: bool) -> None:
        self.ctx = ctx
        self.held = held
        self.free_permit: Permit | None = None
        """A permit that costs no bookkeeping (closed): handed out without a call."""

    def try_acquire(self, now: float) -> Permit | None:
        """Answer without the lock when nothing changes, else ``None`` (lock-free)."""
        return None

    def acquire(self, now: float) -> Permit:
        raise NotImplementedError

    def record(self, failed: bool, slow: bool, now: float) -> Transition | None:
        return None

    def release(self) -> None:
        return None

    def effective(self, now: float) -> CircuitState:
        """The state a caller would meet at ``now`` (lock-free read)."""
        return self.kind

    def snapshot(self, now: float) -> BreakerSnapshot:
        return BreakerSnapshot(self.effective(now), self.held, 0, 0, 0, 0, 0, 0, 0.0)


class ClosedState(State):
    """Calls pass; outcomes feed the window; the decider may open the circuit.

    Consecutive failures are tracked with sequence numbers rather than a
    counter a success must reset, so that the lock-free success path only
    stores its own sequence number (``mark``).
    """

    __slots__ = (
        "_decider",
        "_last_failure",
        "_metrics",
        "_minimum",
        "_run",
        "crossing",
        "lock_free",
        "mark",
        "permit",
        "success_seq",
    )

    kind = CLOSED

    def __init__(self, ctx: BreakerContext, now: float, held: bool) -> None:
        super().__init__(ctx, held)
        config = ctx.config
        self._decider = config.decider
        self._metrics = metrics = new_metrics(config.window, now)
        self.permit = self.free_permit = Permit(True, CLOSED, 0.0, self)
        self.mark = 0  # sequence number of the latest success
        self._last_failure = 0
        self._run = 0  # failures since the last success, valid while mark < _last_failure
        # A plain success in a count window can only open the circuit by bringing the
        # window up to minimum_calls; the lock-free path judges at that one call.
        uses_min = config.decider.uses_minimum_calls
        self._minimum = config.decider.minimum_calls
        self.crossing = self._minimum if uses_min and not held else 0
        self.success_seq = metrics.tick
        self.lock_free = metrics.lock_free

    def success(self) -> Transition | None:
        """Count one plain (not failed, not slow) success without the lock (if ``lock_free``)."""
        seq = self.success_seq()
        self.mark = seq
        if seq != self.crossing:
            return None
        return self.ctx.judge(self, seq)

    def judge(self, seq: int) -> Transition | None:
        """Whether the plain success numbered ``seq`` (``crossing``) moves the circuit."""
        return self.ctx.judge(self, seq)

    @property
    def consecutive_failures(self) -> int:
        return 0 if self.mark > self._last_failure else self._run

    def try_acquire(self, now: float) -> Permit | None:
        return self.permit

    def acquire(self, now: float) -> Permit:
        return self.permit

    def record(self, failed: bool, slow: bool, now: float) -> Transition | None:
        seq = self.success_seq()
        if failed:
            run = self._run = 1 if self.mark > self._last_failure else self._run + 1
            self._last_failure = seq
        else:
            self.mark = seq
            run = 0
        metrics = self._metrics
        calls, failures, slow_calls = metrics.add(seq, failed, slow, now)
        if self.held:
            return None
        if not (failed or slow or metrics.moved) and calls != self._minimum:
            # Judged "stay closed" at the last record; since then only this success was
            # added, which lowers every rate.  Only reaching minimum_calls or calls
            # leaving the window (``moved``) can change the verdict.
            return None
        if metrics.moved:
            metrics.moved = False
        reason = self._decider.should_open(calls, failures, slow_calls, run)
        if reason is None:
            return None
        return self.ctx.enter(OPEN, now, reason)

    def decide(self, seq: int, now: float) -> Transition | None:
        """Judge the window as of call ``seq`` (the lock-free path's one check)."""
        calls, failures, slow = self._metrics.totals(seq, now)
        if self._metrics.moved:
            self._metrics.moved = False
        reason = self._decider.should_open(calls, failures, slow, self.consecutive_failures)
        if reason is None:
            return None
        return self.ctx.enter(OPEN, now, reason)

    def snapshot(self, now: float) -> BreakerSnapshot:
        latest = max(self.mark, self._last_failure)
        calls, failures, slow = self._metrics.totals(latest, now)
        consecutive = self.consecutive_failures
        return BreakerSnapshot(CLOSED, self.held, calls, failures, slow, consecutive, 0, 0, 0.0)


class OpenState(State):
    """Calls are rejected until ``open_duration`` has passed (forever while held).

    Nothing recorded while open touches the timer: permits issued before the
    circuit opened belong to an earlier state and are ignored.  A clock that
    stepped back finds ``until`` more than ``open_duration`` ahead: the timer is
    then pulled back to ``now + open_duration`` (under the lock), so nobody
    waits out the step.  A forward clock never gets there.
    """

    __slots__ = ("until",)

    kind = OPEN

    def __init__(self, ctx: BreakerContext, now: float, held: bool) -> None:
        super().__init__(ctx, held)
        self.until = math.inf if held else now + ctx.config.open_duration

    def retry_after(self, now: float) -> float:
        open_duration = self.ctx.config.open_duration
        if self.held:
            return open_duration
        until = self.until
        if until - now > open_duration:  # a clock that stepped back (see behind)
            until = now + open_duration
        return wait_until(now, until)

    def try_acquire(self, now: float) -> Permit | None:
        """Refuse without the lock while the timer runs (only ``behind`` moves it)."""
        until = self.until
        if now >= until:
            return None  # time for the half-open transition: under the lock
        if self.held:
            delay = self.ctx.config.open_duration
        else:
            delay = until - now
            if delay > self.ctx.config.open_duration:
                return None  # a clock that stepped back: the timer moves under the lock
            if now + delay < until:
                delay = wait_until(now, until)
        return _new(Permit, (False, OPEN, delay, self, None))

    def acquire(self, now: float) -> Permit:
        if now >= self.until:
            ctx = self.ctx
            transition = ctx.enter(HALF_OPEN, now, OPEN_DURATION_ELAPSED)
            return ctx.current.acquire(now)._replace(transition=transition)
        self.behind(now)
        return _new(Permit, (False, OPEN, self.retry_after(now), self, None))

    def behind(self, now: float) -> None:
        """Never open for more than ``open_duration`` from ``now`` (lock held)."""
        open_duration = self.ctx.config.open_duration
        if not self.held and self.until - now > open_duration:
            self.until = now + open_duration

    def effective(self, now: float) -> CircuitState:
        return HALF_OPEN if now >= self.until else OPEN

    def snapshot(self, now: float) -> BreakerSnapshot:
        if now >= self.until:
            return BreakerSnapshot(HALF_OPEN, False, 0, 0, 0, 0, 0, 0, 0.0)
        return BreakerSnapshot(OPEN, self.held, 0, 0, 0, 0, 0, 0, self.retry_after(now))


class HalfOpenState(State):
    """Exactly ``half_open_max_calls`` probes run; the rest are rejected.

    Any failed probe reopens at once (a failure racing a success wins); when
    every probe has succeeded the decider checks their slow rate and the
    circuit closes or reopens.  A released probe (ignored outcome) frees its
    slot for another caller.
    """

    __slots__ = ("in_flight", "permit", "slow", "succeeded")

    kind = HALF_OPEN

    def __init__(self, ctx: BreakerContext, now: float, held: bool) -> None:
        super().__init__(ctx, held)
        self.in_flight = 0
        self.succeeded = 0
        self.slow = 0
        self.permit = Permit(True, HALF_OPEN, 0.0, self)

    def acquire(self, now: float) -> Permit:
        if self.in_flight + self.succeeded < self.ctx.config.half_open_max_calls:
            self.in_flight += 1
            return self.permit
        # Unknown until the probes finish; the worst case is a reopen for open_duration.
        return _new(Permit, (False, HALF_OPEN, self.ctx.config.open_duration, self, None))

    def record(self, failed: bool, slow: bool, now: float) -> Transition | None:
        if self.in_flight <= 0:  # a permit reported twice: the slot is already settled
            return None
        self.in_flight -= 1
        ctx = self.ctx
        if failed:
            return ctx.enter(OPEN, now, PROBE_FAILED)
        self.succeeded += 1
        self.slow += slow
        config = ctx.config
        if self.succeeded < config.half_open_max_calls:
            return None
        reason = config.decider.should_reopen(self.succeeded, self.slow)
        if reason is not None:
            return ctx.enter(OPEN, now, reason)
        return ctx.enter(CLOSED, now, PROBES_SUCCEEDED)

    def release(self) -> None:
        if self.in_flight > 0:
            self.in_flight -= 1

    def snapshot(self, now: float) -> BreakerSnapshot:
        return BreakerSnapshot(HALF_OPEN, False, 0, 0, 0, 0, self.in_flight, self.succeeded, 0.0)


_CLASSES: dict[CircuitState, type[ClosedState | OpenState | HalfOpenState]] = {
    CLOSED: ClosedState,
    OPEN: OpenState,
    HALF_OPEN: HalfOpenState,
}


def new_state(kind: CircuitState, ctx: BreakerContext, now: float, held: bool) -> State:
    """A fresh state object (a new epoch) of ``kind``."""
    return _CLASSES[kind](ctx, now, held)


def wait_until(now: float, target: float) -> float:
    """Smallest ``d`` with ``now + d >= target``: retrying after it is never early."""
    delay = target - now
    if now + delay < target:
        delay = math.nextafter(delay, math.inf)
        while now + delay < target:  # pragma: no cover - one step always suffices in practice
            delay = math.nextafter(delay, math.inf)
    return delay
