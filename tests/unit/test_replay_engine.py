"""The replay engine and its statistics, and the numbers on the shipped sample log."""

from __future__ import annotations

import random
from array import array
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.ratelimit.algorithms import Algorithm
from resilience.ratelimit.spec import parse_policy
from resilience.replay import KeySpec, Replay, ReplayOptions, ReplayResult, replay_file
from resilience.replay.badlines import BadLines
from resilience.replay.stats import DelayStats, PeakWindow, Timeline, percentile
from resilience.testing import max_admitted_in_window

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "boundary-burst.log"
DEMO_POLICIES = [
    "fixed-window:100/minute",
    "sliding-log:100/minute",
    "sliding-counter:100/minute",
    "gcra:100/minute,burst=10",
    "leaky-shape:100/minute,capacity=20",
]
DAY = 1_710_374_400.0  # 2024-03-14T00:00:00Z


def policies(*specs: str) -> list[tuple[str, Algorithm]]:
    return [(spec, parse_policy(spec)) for spec in specs]


# -- statistics -------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 300), st.sampled_from("abc")), max_size=200).map(sorted),
    st.integers(1, 60),
)
def test_peak_window_matches_the_batch_measure(events: list[tuple[int, str]], period: int) -> None:
    peak = PeakWindow(float(period))
    for t, key in events:
        peak.add(key, float(t))
    expected = 0.0
    for key in "abc":
        times = [float(t) for t, k in events if k == key]
        expected = max(expected, max_admitted_in_window(times, float(period)))
    assert peak.best == expected
    if events:
        times = [float(t) for t, k in events if k == peak.best_key]
        window = [t for t in times if peak.best_start <= t < peak.best_start + period]
        assert len(window) == peak.best


def test_peak_window_forgets_idle_keys() -> None:
    peak = PeakWindow(1.0)
    for i in range(70_000):  # enough adds to trigger a sweep
        peak.add(f"k{i}", i * 2.0)
    assert len(peak) <= 70_000 - 65_536 + 1  # only keys added since the sweep
    assert peak.best == 1


def test_peak_window_tolerates_float_noise_in_even_spacing() -> None:
    peak = PeakWindow(60.0)
    t = 0.0
    for _ in range(300):  # departures every 0.6 s, accumulated as a shaper does
        peak.add("k", t)
        t += 0.6
    assert peak.best == 100


def test_timeline_coarsens_without_losing_counts() -> None:
    timeline = Timeline(max_bins=8)
    rng = random.Random(3)
    outcomes = [rng.random() < 0.7 for _ in range(500)]
    for i, allowed in enumerate(outcomes):
        timeline.add(100.0 + i * 0.37, allowed)
    assert len(timeline.admitted) <= 8
    assert sum(timeline.admitted) == sum(outcomes)
    assert sum(timeline.rejected) == len(outcomes) - sum(outcomes)
    edges = timeline.edges()
    assert edges[0] == 100.0
    assert edges[-1] >= 100.0 + 499 * 0.37


def test_percentiles_and_delay_stats() -> None:
    data = [float(i) for i in range(1, 101)]
    assert percentile(data, 50) == 50.0
    assert percentile(data, 95) == 95.0
    assert percentile(data, 99) == 99.0
    assert percentile(data, 100) == 100.0
    assert percentile([], 50) == 0.0
    stats = DelayStats.of(array("d", [0.0, 0.0, 1.0, 3.0]))
    assert (stats.delayed, stats.mean, stats.max) == (2, 1.0, 3.0)
    assert DelayStats.of(array("d")).delayed == 0


# -- the engine ---------------------------------------------------------------------------


def test_fixed_window_boundary_burst_on_synthetic_records() -> None:
    edge = DAY + 120.0
    burst = [(edge - 5 + i * 0.05, "x") for i in range(100)]
    burst += [(edge + i * 0.05, "x") for i in range(100)]
    replay = Replay(policies("fixed-window:100/minute", "sliding-log:100/minute"))
    replay.feed(burst)
    fixed, log = replay.result(source="s", input_format="f", key="ip", bad=_bad()).policies
    assert (fixed.admitted, fixed.rejected, fixed.peak) == (200, 0, 200)
    assert fixed.peak_start == edge - 5
    assert (log.admitted, log.rejected, log.peak) == (100, 100, 100)
    assert log.top_rejected(1) == [("x", 100)]


def test_out_of_order_records_are_reordered_within_the_window() -> None:
    records = [(DAY + 10.0, "a"), (DAY + 9.0, "a"), (DAY + 10.5, "a"), (DAY + 9.5, "a")]
    replay = Replay(policies("sliding-log:2/s"))
    replay.feed(records)
    result = replay.result(source="s", input_format="f", key="ip", bad=_bad())
    assert (result.requests, result.out_of_order, result.late) == (4, 2, 0)
    assert result.max_lag == 1.0
    assert (result.first_time, result.last_time) == (DAY + 9.0, DAY + 10.5)
    (log,) = result.policies
    assert (log.admitted, log.rejected) == (4, 0)  # 9, 9.5, 10, 10.5: two a second


def test_without_a_window_older_records_are_clamped_and_counted() -> None:
    replay = Replay(policies("sliding-log:2/s"), reorder_window=0)
    replay.feed([(DAY + 10.0, "a"), (DAY + 9.0, "a"), (DAY + 10.5, "a"), (DAY + 9.5, "a")])
    result = replay.result(source="s", input_format="f", key="ip", bad=_bad())
    assert (result.requests, result.out_of_order, result.late) == (4, 2, 2)
    assert result.max_lag == 1.0
    assert (result.first_time, result.last_time) == (DAY + 10.0, DAY + 10.5)
    (log,) = result.policies
    assert (log.admitted, log.rejected) == (2, 2)  # all four land in one second


def test_shaping_records_queueing_delay() -> None:
    replay = Replay(policies("leaky-shape:10/s,capacity=5"))
    replay.feed((DAY, "k") for _ in range(8))
    (shape,) = replay.result(source="s", input_format="f", key="ip", bad=_bad()).policies
    assert (shape.admitted, shape.rejected) == (5, 3)
    assert shape.delay is not None
    assert shape.delay.delayed == 4
    assert shape.delay.max == pytest.approx(0.4)
    assert shape.peak == 5  # departures 0.1 s apart, all within a second


def test_a_full_store_fails_open_and_is_counted() -> None:
    replay = Replay(policies("sliding-log:1/minute"), max_keys=1)
    replay.feed([(DAY, "a"), (DAY + 1, "b"), (DAY + 2, "a")])
    (log,) = replay.result(source="s", input_format="f", key="ip", bad=_bad()).policies
    assert log.store_refused == 1
    assert (log.admitted, log.rejected) == (2, 1)


def test_replay_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="policies"):
        Replay([])
    with pytest.raises(ValueError, match="max_keys"):
        Replay(policies("gcra:1/s"), max_keys=0)


def test_empty_input_gives_an_empty_result() -> None:
    replay = Replay(policies("gcra:1/s"))
    replay.feed([])
    result = replay.result(source="s", input_format="f", key="ip", bad=_bad())
    assert result.requests == 0
    assert result.first_time is None
    assert result.last_time is None


def _bad() -> BadLines:
    return BadLines()


# -- the shipped sample ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_result() -> ReplayResult:
    options = ReplayOptions(
        path=str(SAMPLE), policies=policies(*DEMO_POLICIES), key=KeySpec("ip"), timeline=True
    )
    return replay_file(options)


def test_sample_is_clean_clf(sample_result: ReplayResult) -> None:
    result = sample_result
    lines = SAMPLE.read_text().splitlines()
    assert 1000 < len(lines) < 5000
    assert result.requests == len(lines)
    assert result.bad.count == 0
    assert result.out_of_order == 0
    assert result.input_format == "Common/Combined Log Format"


def test_sample_shows_the_fixed_window_boundary_burst(sample_result: ReplayResult) -> None:
    fixed, log, counter, gcra, shape = sample_result.policies
    assert fixed.peak == 2 * fixed.limit
    assert fixed.peak_key == "203.0.113.7"
    # the sliding log is exact, GCRA holds the burst client to its burst plus the rate
    assert log.peak <= log.limit
    assert gcra.peak <= gcra.limit
    assert shape.peak <= shape.limit
    assert fixed.limit < counter.peak < fixed.peak  # the weighted estimate is approximate
    assert log.rejected_by_key["203.0.113.7"] == 100
    assert gcra.rejected_by_key["203.0.113.7"] > 100
    assert shape.delay is not None
    assert shape.delay.delayed > 0
    assert shape.delay.max > 5.0  # a full queue of 20 at 0.6 s apart


def test_sample_sliding_log_never_exceeds_the_limit_for_any_key(
    sample_result: ReplayResult,
) -> None:
    """Recompute independently: rerun the sliding log and check every key's admissions."""
    from resilience.replay.clf import ClfParser
    from resilience.replay.source import Source

    with Source(str(SAMPLE)) as source:
        records = list(ClfParser(KeySpec("ip")).records(source.lines(), lambda n, r: None))
    algorithm = parse_policy("sliding-log:100/minute")
    state: dict[str, Any] = {}
    admitted: dict[str, list[float]] = {}
    for t, key in records:
        state[key], decision = algorithm.decide(state.get(key), t - DAY, 1)
        if decision.allowed:
            admitted.setdefault(key, []).append(t - DAY)
    worst = max(max_admitted_in_window(times, 60.0) for times in admitted.values())
    assert worst == 100
    assert sum(len(v) for v in admitted.values()) == sample_result.policies[1].admitted


def test_sample_timeline_totals(sample_result: ReplayResult) -> None:
    for p in sample_result.policies:
        assert p.timeline is not None
        assert sum(p.timeline.admitted) == p.admitted
        assert sum(p.timeline.rejected) == p.rejected
        assert p.timeline.edges()[0] == DAY + 12 * 3600
