"""The failover switch against a reference model that rereads each origin's whole history.

The model keeps every observation per origin and decides health by scanning
the history from the start (a verdict flips at the end of a run of
``unhealthy_after`` failures or ``healthy_after`` passes); it knows nothing of
capped counters.  The stateful test interleaves observations of both origins
and time steps on a FakeClock; invariants: the switch agrees with the model,
traffic moves only when a verdict flips, one origin's verdict flips at most
once per ``min(unhealthy_after, healthy_after)`` observations of it, and a
primary that alternates pass/fail never moves traffic when both thresholds
are > 1.  (Two switches in a row can be closer when *different* origins
flip: both down, the secondary recovers, then the primary does.)
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from resilience.failover.switch import (
    PRIMARY,
    SECONDARY,
    Hysteresis,
    OriginName,
    SwitchState,
    observe,
)
from resilience.testing import FakeClock


def model_healthy(history: list[bool], rule: Hysteresis) -> bool:
    healthy, run_ok, run_fail = True, 0, 0
    for ok in history:
        if ok:
            run_ok, run_fail = run_ok + 1, 0
            if run_ok >= rule.healthy_after:
                healthy = True
        else:
            run_ok, run_fail = 0, run_fail + 1
            if run_fail >= rule.unhealthy_after:
                healthy = False
    return healthy


class SwitchMachine(RuleBasedStateMachine):
    @initialize(
        unhealthy_after=st.integers(1, 5),
        healthy_after=st.integers(1, 5),
    )
    def setup(self, unhealthy_after: int, healthy_after: int) -> None:
        self.rule = Hysteresis(unhealthy_after, healthy_after)
        self.clock = FakeClock()
        self.state = SwitchState(since=self.clock.monotonic())
        self.history: dict[OriginName, list[bool]] = {PRIMARY: [], SECONDARY: []}
        self.model_active: OriginName = PRIMARY
        self.since_flip: dict[OriginName, int | None] = {PRIMARY: None, SECONDARY: None}
        self.switches = 0

    @rule(origin=st.sampled_from([PRIMARY, SECONDARY]), ok=st.booleans())
    def see(self, origin: OriginName, ok: bool) -> None:
        before = self.state
        self.state, moved = observe(before, origin, ok, self.clock.monotonic(), self.rule)
        verdict_before = model_healthy(self.history[origin], self.rule)
        self.history[origin].append(ok)
        verdict_after = model_healthy(self.history[origin], self.rule)
        flipped = verdict_before != verdict_after
        since = self.since_flip[origin]
        if since is not None:
            self.since_flip[origin] = since + 1
        if flipped:
            run = self.rule.unhealthy_after if ok is False else self.rule.healthy_after
            tail = self.history[origin][-run:]
            assert len(tail) == run and all(o == ok for o in tail)  # a full run of equal outcomes
            if since is not None:
                assert since + 1 >= run  # a flip needs a whole new run after the last one
            self.since_flip[origin] = 0
        primary = model_healthy(self.history[PRIMARY], self.rule)
        secondary = model_healthy(self.history[SECONDARY], self.rule)
        expected = PRIMARY if primary else SECONDARY if secondary else self.model_active
        assert self.state.active == expected
        if expected != self.model_active:
            assert moved is not None
            assert (moved.old, moved.new) == (self.model_active, expected)
            assert moved.at == self.clock.monotonic() == self.state.since
            assert flipped  # traffic moves only when a verdict flips
            self.switches += 1
            self.model_active = expected
        else:
            assert moved is None
            assert self.state.since == before.since

    @rule(seconds=st.floats(0, 100))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def counts_agree(self) -> None:
        if not hasattr(self, "state"):
            return
        assert self.state.switches == self.switches
        for origin in (PRIMARY, SECONDARY):
            health = self.state.health(origin)
            assert health.healthy == model_healthy(self.history[origin], self.rule)
            assert 0 <= health.failures <= self.rule.unhealthy_after
            assert 0 <= health.passes <= self.rule.healthy_after
            assert health.failures == 0 or health.passes == 0


TestSwitch = SwitchMachine.TestCase
TestSwitch.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


@settings(max_examples=150, deadline=None)
@given(
    unhealthy_after=st.integers(2, 6),
    healthy_after=st.integers(2, 6),
    rounds=st.integers(1, 200),
    start_ok=st.booleans(),
)
def test_a_primary_flapping_every_check_never_moves_traffic(
    unhealthy_after: int, healthy_after: int, rounds: int, start_ok: bool
) -> None:
    rule = Hysteresis(unhealthy_after, healthy_after)
    state = SwitchState()
    for i in range(rounds):
        state, moved = observe(state, PRIMARY, (i % 2 == 0) == start_ok, float(i), rule)
        assert moved is None and state.active == PRIMARY


@settings(max_examples=150, deadline=None)
@given(
    unhealthy_after=st.integers(1, 6),
    healthy_after=st.integers(1, 6),
    outcomes=st.lists(st.booleans(), max_size=300),
)
def test_switches_are_bounded_by_the_hysteresis(
    unhealthy_after: int, healthy_after: int, outcomes: list[bool]
) -> None:
    """Any pattern of primary outcomes: a round trip costs unhealthy_after + healthy_after."""
    rule = Hysteresis(unhealthy_after, healthy_after)
    state = SwitchState()
    for i, ok in enumerate(outcomes):
        state, _ = observe(state, PRIMARY, ok, float(i), rule)
    round_trip = unhealthy_after + healthy_after
    assert state.switches <= 2 * (len(outcomes) // round_trip) + 1


def test_hysteresis_validates() -> None:
    import pytest

    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="unhealthy_after"):
            Hysteresis(bad, 2)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="healthy_after"):
            Hysteresis(2, bad)  # type: ignore[arg-type]
