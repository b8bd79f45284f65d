"""The PNG timeline: requests per second by outcome, latency, and the system's states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resilience.demo.runner import DemoResult
from resilience.demo.view import COLOURS, SHOWN

__all__ = ["plot_timeline"]

PHASE_COLOURS = {
    "latency": "#fff3c4",
    "errors": "#ffd9c4",
    "outage": "#ffc4c4",
}
BREAKER_LEVEL = {"closed": 0.0, "half_open": 0.5, "open": 1.0}


def plot_timeline(result: DemoResult, path: str | Path) -> Path:
    """Draw ``result``'s timeline to ``path`` (PNG); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ticks = [tick for tick in result.ticks if tick.t >= 0]
    times = [tick.t for tick in ticks]
    figure, (rates, latency, states) = plt.subplots(
        3, 1, figsize=(12.5, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.4, 1.6]}
    )
    for axis in (rates, latency, states):
        _shade_phases(axis, result)
    stacks = [[tick.rates.get(name, 0.0) for tick in ticks] for name in SHOWN]
    rates.stackplot(
        times, stacks, labels=list(SHOWN), colors=[_colour(COLOURS[n]) for n in SHOWN], alpha=0.85
    )
    rates.set_ylabel("requests / s")
    rates.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    verdict = "PASS" if result.verdict.passed else "FAIL"
    v = result.verdict
    rates.set_title(
        f"resilience demo (seed {result.scenario.seed}): verdict {verdict}; "
        f"{v.charges} charges for {v.distinct_keys} idempotency keys, "
        f"{v.served_in_outage} requests served during the outage",
        fontsize=10,
    )
    for when, text in result.changes:
        if text.startswith("phase ") and not text.startswith("phase calm-2"):
            rates.annotate(
                text.split(":")[0].removeprefix("phase "),
                (max(0.0, when), 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                fontsize=8,
            )
    latency.plot(times, [t.p50 * 1000 for t in ticks], label="p50", color="#1f77b4")
    latency.plot(times, [t.p99 * 1000 for t in ticks], label="p99", color="#d62728")
    latency.set_yscale("symlog", linthresh=10)
    latency.set_ylabel("latency ms")
    latency.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    states.step(
        times,
        [BREAKER_LEVEL.get(t.breaker, 0.0) for t in ticks],
        where="post",
        label="primary breaker\n(0 closed, 0.5 half-open,\n1 open)",
        color="#d62728",
    )
    states.step(
        times,
        [1.0 if t.active == "secondary" else 0.0 for t in ticks],
        where="post",
        label="traffic on the secondary",
        color="#9467bd",
        linestyle="--",
    )
    states.plot(
        times,
        [t.bulkhead / max(1, t.capacity) for t in ticks],
        label="bulkhead occupancy",
        color="#7f7f7f",
        linewidth=1,
    )
    states.set_ylim(-0.1, 1.25)
    states.set_xlabel("seconds")
    states.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    figure.tight_layout()
    out = Path(path)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def _shade_phases(axis: Any, result: DemoResult) -> None:
    for phase in result.scenario.phases:
        colour = PHASE_COLOURS.get(phase.name)
        if colour is not None:
            axis.axvspan(phase.start, phase.end, color=colour, zorder=0)


def _colour(name: str) -> str:
    return {"green": "#2ca02c", "cyan": "#17becf", "yellow": "#e6b800", "red": "#d62728"}[name]
