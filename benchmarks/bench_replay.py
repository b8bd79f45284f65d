"""``resilience replay`` on a million lines: time per policy, with and without reordering.

The bar (issue 9): 1,000,000 access-log lines replay in under a minute per
policy, with the reorder buffer on (the default).  The log is the timing log
of ``examples/make_boundary_burst.py --lines N`` (one day, ~20,000 clients,
sorted), and the same lines shuffled within each minute, as a log written at
request completion is out of order (every line displaced by up to 59 s).

Each policy runs, in turns so that machine noise spreads over all of them:

* ``sorted``: the sorted log, default window (the reference);
* ``shuffled``: the shuffled log, default window (must give the same numbers);
* ``shuffled, window 0``: the shuffled log replayed in file order, older lines
  squeezed to the latest time seen (what the replay did before the buffer).

Wall and CPU time of ``replay_file`` (read, parse, replay, statistics) per
run.  ``RESILIENCE_BENCH_REPLAY_LINES`` sets the size (default 1,000,000).
"""

from __future__ import annotations

import importlib.util
import os
import random
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from resilience.ratelimit.spec import parse_policy
from resilience.replay import KeySpec, ReplayOptions, ReplayResult, replay_file

Row = dict[str, Any]

ROOT = Path(__file__).resolve().parents[1]
POLICIES = (
    "fixed-window:100/minute",
    "sliding-log:100/minute",
    "sliding-counter:100/minute",
    "gcra:100/minute,burst=10",
    "token-bucket:10/minute",
    "leaky-shape:100/minute,capacity=20",
)
BAR_SECONDS = 60.0
TABLE = "replay, 1M lines, per policy"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "make_boundary_burst", ROOT / "examples" / "make_boundary_burst.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError("examples/make_boundary_burst.py is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shuffled_within_minutes(lines: Iterator[str], seed: int) -> Iterator[str]:
    """Sorted CLF lines with each minute's lines in a random order."""
    rng = random.Random(seed)
    minute: list[str] = []
    current = ""
    for line in lines:
        stamp = line[line.index("[") + 1 :][:17]  # dd/Mon/yyyy:HH:MM
        if stamp != current and minute:
            rng.shuffle(minute)
            yield from minute
            minute = []
        current = stamp
        minute.append(line)
    rng.shuffle(minute)
    yield from minute


def make_logs(folder: Path, lines: int) -> tuple[Path, Path]:
    gen = _generator()
    ordered = folder / "sorted.log"
    shuffled = folder / "shuffled.log"
    with ordered.open("w", encoding="utf-8") as out:
        out.writelines(gen.big(lines, 7))
    with ordered.open(encoding="utf-8") as src, shuffled.open("w", encoding="utf-8") as out:
        out.writelines(shuffled_within_minutes(src, 11))
    return ordered, shuffled


def replay_once(path: Path, spec: str, window: float | None) -> tuple[ReplayResult, float, float]:
    extra = {} if window is None else {"reorder_window": window}
    options = ReplayOptions(
        path=str(path), policies=[(spec, parse_policy(spec))], key=KeySpec("ip"), **extra
    )
    wall, cpu = time.perf_counter(), time.process_time()
    result = replay_file(options)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def run() -> list[Row]:
    lines = int(os.environ.get("RESILIENCE_BENCH_REPLAY_LINES", "1000000"))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        started = time.perf_counter()
        ordered, shuffled = make_logs(Path(tmp), lines)
        made = time.perf_counter() - started
        variants = (
            ("sorted", ordered, None),
            ("shuffled", shuffled, None),
            ("shuffled, window 0", shuffled, 0.0),
        )
        for spec in POLICIES:
            results: dict[str, ReplayResult] = {}
            for name, path, window in variants:
                result, wall, cpu = replay_once(path, spec, window)
                results[name] = result
                (p,) = result.policies
                rows.append(
                    {
                        "table": TABLE.replace("1M", f"{lines:,}"),
                        "policy": spec,
                        "input": name,
                        "wall s": round(wall, 2),
                        "cpu s": round(cpu, 2),
                        "rejected": p.rejected,
                        "out of order": result.out_of_order,
                        "late": result.late,
                        "buffer peak": result.buffer_peak,
                        f"< {BAR_SECONDS:g} s": "PASS" if wall < BAR_SECONDS else "FAIL",
                    }
                )
            same = _numbers(results["shuffled"]) == _numbers(results["sorted"])
            rows.append(
                {
                    "table": "shuffled log (default window) = sorted log",
                    "policy": spec,
                    "same numbers": "yes" if same else "NO",
                    "rejected sorted / shuffled / window 0": " / ".join(
                        f"{results[v].policies[0].rejected:,}" for v, _, _ in variants
                    ),
                }
            )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(
        {
            "table": "run",
            "lines": lines,
            "making both logs s": round(made, 1),
            "peak RSS of the process MB": round(peak_mb),
        }
    )
    return rows


def _numbers(result: ReplayResult) -> tuple[Any, ...]:
    (p,) = result.policies
    return (p.admitted, p.rejected, p.rejected_by_key, p.peak, p.peak_key, p.peak_start, p.delay)


def main() -> None:
    from benchmarks.__main__ import machine, markdown, tables

    print(f"Machine: {machine()}\n")
    for title, group in tables("bench_replay", run()):
        print(f"### {title}\n\n{markdown(group)}\n", flush=True)


if __name__ == "__main__":
    main()
