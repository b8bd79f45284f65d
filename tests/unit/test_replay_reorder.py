"""The replay's reorder buffer: a log written at request completion replays as if sorted by time.

Access logs are written when a request *finishes*, so lines run out of order
by up to the longest request.  The replay holds lines in a buffer keyed by
(timestamp, line number) for ``reorder_window`` seconds of log time and
replays them in time order, so the result is exactly that of the same file
sorted by time (a stable sort: equal timestamps keep their line order).
Lines later than the window are counted and reported.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilience.cli import main
from resilience.ratelimit.algorithms import Algorithm
from resilience.ratelimit.spec import parse_policy
from resilience.replay import KeySpec, PolicyResult, Replay, ReplayOptions, replay_file
from resilience.replay.badlines import BadLines
from resilience.replay.engine import DEFAULT_REORDER_WINDOW

DAY = 1_431_820_800.0  # 2015-05-17T00:00:00Z, the day of the public Apache sample
START = DAY + 10 * 3600.0
EVERY_KIND = [
    "gcra:60/minute,burst=10",
    "token-bucket:60/minute,burst=10",
    "leaky-police:60/minute,capacity=10",
    "leaky-shape:60/minute,capacity=10",
    "fixed-window:60/minute",
    "sliding-log:60/minute",
    "sliding-counter:60/minute,buckets=4",
]
Record = tuple[float, str]


def policies(*specs: str) -> list[tuple[str, Algorithm]]:
    return [(spec, parse_policy(spec)) for spec in specs]


def outcome(p: PolicyResult) -> tuple[Any, ...]:
    """Everything a policy reports, timeline bins included, as comparable data."""
    timeline = p.timeline
    bins = None if timeline is None else (timeline.width, timeline.admitted, timeline.rejected)
    return (
        p.policy,
        p.admitted,
        p.rejected,
        p.rejected_by_key,
        p.peak,
        p.peak_key,
        p.peak_start,
        p.delay,
        bins,
        p.store_refused,
    )


# -- synthetic logs -----------------------------------------------------------------------


def synthetic_log(rng: random.Random, minutes: int = 30) -> list[Record]:
    """A sorted log at one-second resolution: background clients, a steady heavy one, bursts."""
    records: list[Record] = []
    span = minutes * 60
    for n in range(40):
        ip = f"198.51.100.{n + 1}"
        rate = rng.randint(1, 20)  # per minute
        records += [(START + rng.randrange(span), ip) for _ in range(rate * minutes)]
    steady = "192.0.2.80"  # 80 a minute: over 60/minute, so every policy has work to do
    records += [(START + rng.randrange(span), steady) for _ in range(80 * minutes)]
    for n in range(3):
        ip = f"203.0.113.{n + 7}"
        for _ in range(minutes // 3):
            at = rng.randrange(span - 5)
            records += [(START + at + rng.randrange(4), ip) for _ in range(rng.randint(15, 45))]
    return sorted(records, key=lambda r: r[0])


def shuffle_within_minutes(records: Sequence[Record], rng: random.Random) -> list[Record]:
    """The lines of each minute in a random order (the public Apache sample looks like this)."""
    minutes: dict[int, list[Record]] = {}
    for record in records:
        minutes.setdefault(int(record[0] // 60), []).append(record)
    out: list[Record] = []
    for minute in sorted(minutes):
        lines = minutes[minute]
        rng.shuffle(lines)
        out += lines
    return out


def stable_sorted(records: Iterable[Record]) -> list[Record]:
    """The same lines sorted by time; equal times keep their order (``sort -s``)."""
    return sorted(records, key=lambda r: r[0])


def write_clf(path: Path, records: Iterable[Record]) -> Path:
    with path.open("w") as out:
        for t, ip in records:
            stamp = datetime.fromtimestamp(t, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
            out.write(f'{ip} - - [{stamp}] "GET / HTTP/1.1" 200 512 "-" "test"\n')
    return path


def replay_records(
    records: Iterable[Record], specs: Sequence[str], **kwargs: Any
) -> tuple[Replay, list[PolicyResult]]:
    replay = Replay(policies(*specs), timeline=True, **kwargs)
    replay.feed(records)
    result = replay.result(source="s", input_format="f", key="ip", bad=BadLines())
    return replay, result.policies


# -- the shuffled log gives the sorted log's result ----------------------------------------


def test_a_log_shuffled_within_each_minute_replays_as_the_sorted_log(tmp_path: Path) -> None:
    rng = random.Random(20150517)
    shuffled = shuffle_within_minutes(synthetic_log(rng), rng)
    shuffled_log = write_clf(tmp_path / "shuffled.log", shuffled)
    sorted_log = write_clf(tmp_path / "sorted.log", stable_sorted(shuffled))

    def run(path: Path, **kwargs: Any) -> Any:
        options = ReplayOptions(
            path=str(path), policies=policies(*EVERY_KIND), key=KeySpec("ip"), timeline=True,
            **kwargs,
        )  # fmt: skip
        return replay_file(options)

    reference = run(sorted_log)
    assert reference.out_of_order == 0
    result = run(shuffled_log)  # the default window
    assert result.reorder_window == DEFAULT_REORDER_WINDOW >= 120.0
    assert result.out_of_order > len(shuffled) // 2
    assert 50.0 <= result.max_lag < 60.0
    assert result.late == 0
    assert result.requests == reference.requests == len(shuffled)
    assert (result.first_time, result.last_time) == (reference.first_time, reference.last_time)
    for got, expected in zip(result.policies, reference.policies, strict=True):
        assert outcome(got) == outcome(expected), got.policy
    # Sanity: the shuffle matters. Replayed in file order (no window), with every late line
    # squeezed to the latest time seen, the bucket policies reject far more.
    squeezed = {p.policy: p for p in run(shuffled_log, reorder_window=0.0).policies}
    sorted_gcra = reference.policies[0]
    assert squeezed[sorted_gcra.policy].rejected > 2 * sorted_gcra.rejected


def test_the_result_does_not_depend_on_how_records_are_fed() -> None:
    rng = random.Random(7)
    shuffled = shuffle_within_minutes(synthetic_log(rng, minutes=6), rng)
    _, whole = replay_records(shuffled, EVERY_KIND)
    replay = Replay(policies(*EVERY_KIND), timeline=True)
    for start in range(0, len(shuffled), 97):
        replay.feed(shuffled[start : start + 97])
    pieces = replay.result(source="s", input_format="f", key="ip", bad=BadLines()).policies
    assert [outcome(p) for p in pieces] == [outcome(p) for p in whole]


SMALL = [
    "gcra:3/10s,burst=2",
    "token-bucket:3/10s",
    "leaky-police:3/10s,capacity=2",
    "leaky-shape:3/10s,capacity=2",
    "fixed-window:3/10s",
    "sliding-log:3/10s",
    "sliding-counter:3/10s,buckets=2",
]


@st.composite
def displaced_logs(draw: st.DrawFn) -> tuple[float, list[Record]]:
    """A log whose every line is at most ``window`` behind the newest line before it.

    Each request starts at ``t`` and is written when it completes, ``d`` in
    ``[0, window]`` later, as an access log does: the file is sorted by
    ``t + d``.  Then no line is more than ``window`` older than any line above it.
    """
    window = draw(st.sampled_from([1.0, 5.0, 30.0, 120.0]))
    size = draw(st.integers(0, 120))
    starts = draw(st.lists(st.integers(0, 400), min_size=size, max_size=size))
    keys = draw(st.lists(st.sampled_from("abc"), min_size=size, max_size=size))
    # Durations in quarter seconds up to the window, the window itself included.
    durations = draw(
        st.lists(st.integers(0, int(window * 4)), min_size=size, max_size=size).map(
            lambda ds: [d / 4 for d in ds]
        )
    )
    requests = [(DAY + s / 2, k, d) for s, k, d in zip(starts, keys, durations, strict=True)]
    requests.sort(key=lambda r: r[0])
    written = sorted(requests, key=lambda r: r[0] + r[2])
    return window, [(t, k) for t, k, _ in written]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(displaced_logs())
def test_any_displacement_within_the_window_gives_the_sorted_result(
    case: tuple[float, list[Record]],
) -> None:
    window, written = case
    worst = 0.0
    newest = -math.inf
    for t, _ in written:
        worst = max(worst, newest - t)
        newest = max(newest, t)
    assert worst <= window  # the strategy's promise
    replay, got = replay_records(written, SMALL, reorder_window=window)
    _, expected = replay_records(stable_sorted(written), SMALL, reorder_window=0.0)
    assert replay.late == 0
    assert [outcome(p) for p in got] == [outcome(p) for p in expected]


# -- lines later than the window --------------------------------------------------------


def test_lines_later_than_the_window_are_counted_and_replayed_at_the_replay_time() -> None:
    records = [
        (DAY + 0.0, "a"),
        (DAY + 100.0, "b"),
        (DAY + 200.0, "c"),  # the window is 60 s: lines up to 140 are replayed now
        (DAY + 150.0, "a"),  # 50 s behind the newest line: within the window, in order
        (DAY + 90.0, "a"),  # 110 s behind, and 100 was replayed already: late
        (DAY + 300.0, "a"),
    ]
    replay, (log,) = replay_records(records, ["sliding-log:1/minute"], reorder_window=60.0)
    result = replay.result(source="s", input_format="f", key="ip", bad=BadLines())
    assert (result.requests, result.out_of_order, result.late) == (6, 2, 1)
    assert result.max_lag == 110.0
    # a at 0 admitted, the late a replayed at 100 (not 90) admitted, a at 150 rejected
    # (within a minute of 100), a at 300 admitted.
    assert (log.admitted, log.rejected) == (5, 1)
    assert log.rejected_by_key == {"a": 1}


def test_a_zero_window_replays_in_file_order_and_squeezes_every_older_line() -> None:
    records = [(DAY + 10.0, "a"), (DAY + 9.0, "a"), (DAY + 10.5, "a"), (DAY + 9.5, "a")]
    replay, (log,) = replay_records(records, ["sliding-log:3/s"], reorder_window=0.0)
    assert (replay.out_of_order, replay.late) == (2, 2)
    assert (log.admitted, log.rejected) == (3, 1)  # squeezed: 10, 10, 10.5, 10.5
    replay, (log,) = replay_records(records, ["sliding-log:3/s"], reorder_window=1.0)
    assert (replay.out_of_order, replay.late) == (2, 0)
    assert (log.admitted, log.rejected) == (4, 0)  # in order: 9, 9.5, 10, 10.5


def test_feeding_after_a_result_goes_on_from_the_replayed_time() -> None:
    replay = Replay(policies("sliding-log:2/minute"))
    replay.feed([(DAY + 30.0, "a"), (DAY + 10.0, "a")])
    first = replay.result(source="s", input_format="f", key="ip", bad=BadLines())
    assert (first.requests, first.late, first.first_time) == (2, 0, DAY + 10.0)
    replay.feed([(DAY + 20.0, "a"), (DAY + 40.0, "b")])  # 20 is older than 30, replayed
    again = replay.result(source="s", input_format="f", key="ip", bad=BadLines())
    assert (again.requests, again.out_of_order, again.late) == (4, 2, 1)
    assert (again.first_time, again.last_time) == (DAY + 10.0, DAY + 40.0)
    (log,) = again.policies
    assert log.rejected_by_key == {"a": 1}  # the late a, replayed at 30 beside 10 and 30


def test_the_buffer_holds_only_the_window() -> None:
    """Bounded memory: a sorted day at 10 lines a second buffers about 10 * window lines."""
    replay = Replay(policies("gcra:1/s"), reorder_window=120.0)
    replay.feed((DAY + i / 10, "k") for i in range(100_000))
    assert replay.buffer_peak <= 120 * 10 + 1
    assert replay.requests < 100_000  # the last window is still buffered ...
    result = replay.result(source="s", input_format="f", key="ip", bad=BadLines())
    assert result.requests == 100_000  # ... until the result drains it
    assert replay.buffer_peak == result.buffer_peak


@pytest.mark.parametrize("window", [-1.0, math.nan, math.inf, "60"])
def test_the_window_is_validated(window: Any) -> None:
    with pytest.raises(ValueError, match="reorder_window"):
        Replay(policies("gcra:1/s"), reorder_window=window)


# -- the command line ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("FORCE_COLOR", raising=False)


@pytest.fixture(scope="module")
def shuffled_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(3)
    records = shuffle_within_minutes(synthetic_log(rng, minutes=10), rng)
    return write_clf(tmp_path_factory.mktemp("reorder") / "shuffled.log", records)


def test_cli_reorders_by_default_and_reports_it(
    shuffled_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(shuffled_log), "-p", "gcra:60/minute,burst=10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["reorder_window"] == DEFAULT_REORDER_WINDOW
    assert data["late"] == 0
    assert data["out_of_order"] > 0
    assert 0 < data["reorder_buffer_peak"] < data["requests"]
    assert main(["replay", str(shuffled_log), "-p", "gcra:60/minute,burst=10"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "put back in time order by the 2min reorder window" in out


def test_cli_reports_late_lines_and_the_window_that_would_fix_them(
    shuffled_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["replay", str(shuffled_log), "-p", "gcra:60/minute,burst=10", "--reorder-window"]
    assert main([*args, "10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["reorder_window"] == 10.0
    assert 0 < data["late"] <= data["out_of_order"]
    assert main([*args, "10"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"{data['late']:,} lines arrived more than the 10s reorder window late" in out
    assert f"--reorder-window {math.ceil(data['max_lag'])}" in out


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_cli_rejects_a_bad_window(
    value: str, shuffled_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(shuffled_log), "-p", "gcra:1/s", "--reorder-window", value]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--reorder-window" in err
    assert "Traceback" not in err
