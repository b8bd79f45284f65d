"""Draw the circuit breaker's state diagram: ``python docs/img/make_breaker_diagram.py``.

Writes ``circuit-breaker-states.png`` next to this script (needs matplotlib:
``pip install 'resilience-patterns[plot]'``).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.patches import Circle, FancyArrowPatch

OUT = Path(__file__).with_name("circuit-breaker-states.png")

STATES = {  # name: (x, y, fill colour)
    "CLOSED": (2.0, 2.2, "#d8f0d2"),
    "OPEN": (8.0, 2.2, "#f6d0cc"),
    "HALF_OPEN": (5.0, 6.6, "#fbe7b5"),
}
RADIUS = 1.3


def state(ax: plt.Axes, name: str, note: str) -> None:
    x, y, colour = STATES[name]
    ax.add_patch(Circle((x, y), RADIUS, facecolor=colour, edgecolor="#333333", linewidth=2))
    ax.text(x, y + 0.3, name, ha="center", va="center", fontsize=12, fontweight="bold")
    ax.text(x, y - 0.35, note, ha="center", va="center", fontsize=8, color="#444444")


def rim(name: str, towards: str, turn: float) -> tuple[float, float]:
    """The point on ``name``'s circle facing ``towards``, turned by ``turn`` radians."""
    (x1, y1, _), (x2, y2, _) = STATES[name], STATES[towards]
    angle = math.atan2(y2 - y1, x2 - x1) + turn
    return x1 + RADIUS * math.cos(angle), y1 + RADIUS * math.sin(angle)


def arrow(
    ax: plt.Axes, start: str, end: str, label: str, bend: float, at: tuple[float, float]
) -> None:
    turn = -bend * 1.2  # leave and enter the circles on the side the arc bows to
    ax.add_patch(
        FancyArrowPatch(
            rim(start, end, turn),
            rim(end, start, -turn),
            connectionstyle=f"arc3,rad={bend}",
            arrowstyle="-|>,head_length=9,head_width=5",
            shrinkA=0,
            shrinkB=0,
            linewidth=1.8,
            color="#333333",
        )
    )
    ax.text(*at, label, ha="center", va="center", fontsize=9, linespacing=1.35)


def main() -> None:
    fig, ax = plt.subplots(figsize=(10, 7.2))
    ax.set_xlim(-0.5, 10.5)
    ax.set_ylim(-1.6, 8.4)
    ax.set_aspect("equal")
    ax.axis("off")

    state(ax, "CLOSED", "calls pass;\noutcomes fill\nthe window")
    state(ax, "OPEN", "calls raise\nCircuitOpen\n(retry_after)")
    state(ax, "HALF_OPEN", "half_open_max_calls\nprobes run; the\nrest are refused")

    arrow(
        ax,
        "CLOSED",
        "OPEN",
        "consecutive_failures in a row, or with\n>= minimum_calls in the window:\n"
        "failure rate >= failure_rate_threshold\nor slow-call rate >= slow_call_rate_threshold",
        bend=0.35,
        at=(5.0, 0.1),
    )
    arrow(
        ax,
        "OPEN",
        "HALF_OPEN",
        "open_duration elapsed:\nthe next call is a probe\n"
        "(late failures do not\nextend the timer)",
        bend=0.25,
        at=(8.6, 5.3),
    )
    arrow(
        ax,
        "HALF_OPEN",
        "CLOSED",
        "every probe succeeded\n(and not too slow):\nfresh, empty window",
        bend=0.25,
        at=(1.5, 5.3),
    )
    arrow(
        ax,
        "HALF_OPEN",
        "OPEN",
        "any probe failed,\ncancelled or\ntimed out (a failure\nbeats a success)",
        bend=0.3,
        at=(4.65, 3.45),
    )
    ax.text(
        5.0,
        -1.25,
        "force_open(): OPEN and held (no probes)   ·   "
        "force_closed(): CLOSED and held (never trips)\n"
        "reset(): CLOSED, empty window, holds released   ·   "
        "ignored exceptions and interrupts count as nothing",
        ha="center",
        va="center",
        fontsize=8.5,
        color="#444444",
    )
    ax.set_title("CircuitBreaker states", fontsize=15, fontweight="bold", pad=4)
    fig.savefig(OUT, dpi=110, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
