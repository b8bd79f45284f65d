"""``--plot out.png``: admitted vs rejected over time, one panel per policy.

matplotlib is optional (the ``plot`` extra) and heavy to import, so it is
imported only here, only when a plot is asked for, with the Agg backend (no
display needed).
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from resilience.replay.engine import ReplayResult

__all__ = ["PlotUnavailable", "load_pyplot", "plot"]

INSTALL_HINT = "pip install 'resilience-patterns[plot]'"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def load_pyplot() -> Any:
    """Import ``matplotlib.pyplot`` on the Agg backend, or explain how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable(
            f"--plot needs matplotlib; install the plot extra: {INSTALL_HINT}"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(result: ReplayResult, path: str | Path) -> Path:
    """Draw the timeline of every policy (replayed with ``timeline=True``) to ``path``."""
    plt = load_pyplot()
    dates: Any = importlib.import_module("matplotlib.dates")  # untyped module

    policies = [p for p in result.policies if p.timeline is not None]
    if not policies:
        raise ValueError("no timeline was recorded; replay with timeline=True")
    rows = len(policies)
    fig, axes = plt.subplots(rows, 1, figsize=(11, 2.2 * rows + 1.2), sharex=True, squeeze=False)
    for ax, p in zip(axes[:, 0], policies, strict=True):
        timeline = p.timeline
        assert timeline is not None
        edges = dates.date2num([datetime.fromtimestamp(t, UTC) for t in timeline.edges()])
        admitted = timeline.admitted
        total = [a + r for a, r in zip(admitted, timeline.rejected, strict=True)]
        ax.stairs(admitted, edges, fill=True, color="#2a9d55", label="admitted")
        ax.stairs(total, edges, baseline=admitted, fill=True, color="#d1495b", label="rejected")
        ax.set_title(
            f"{p.policy}: {p.admitted:,} admitted, {p.rejected:,} rejected",
            loc="left",
            fontsize=10,
        )
        ax.set_ylabel(f"per {timeline.width:g} s")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    bottom = axes[-1, 0]
    locator = dates.AutoDateLocator()
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))
    bottom.set_xlabel("log time (UTC)")
    fig.suptitle(f"resilience replay: {result.source} (key {result.key})", fontsize=11)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
