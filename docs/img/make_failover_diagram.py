"""Draw the failover client's switch: ``python docs/img/make_failover_diagram.py``.

Writes ``failover-switch.png`` next to this script (needs matplotlib:
``pip install 'resilience-patterns[plot]'``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

OUT = Path(__file__).with_name("failover-switch.png")


def box(ax: plt.Axes, x: float, y: float, title: str, note: str, colour: str) -> None:
    ax.add_patch(
        FancyBboxPatch(
            (x - 1.9, y - 1.1),
            3.8,
            2.2,
            boxstyle="round,pad=0.1",
            facecolor=colour,
            edgecolor="#333333",
            linewidth=2,
        )
    )
    ax.text(x, y + 0.45, title, ha="center", va="center", fontsize=12, fontweight="bold")
    ax.text(x, y - 0.35, note, ha="center", va="center", fontsize=8.5, color="#444444")


def arrow(ax: plt.Axes, start: tuple[float, float], end: tuple[float, float], bend: float) -> None:
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            connectionstyle=f"arc3,rad={bend}",
            arrowstyle="-|>,head_length=9,head_width=5",
            linewidth=1.8,
            color="#333333",
        )
    )


def main() -> None:
    fig, ax = plt.subplots(figsize=(10, 6))
    ax.set_xlim(0, 12)
    ax.set_ylim(-1.5, 6.5)
    ax.set_aspect("equal")
    ax.axis("off")
    box(
        ax,
        2.5,
        3.0,
        "PRIMARY active",
        "requests go to the primary;\na failure may be replayed\non the secondary",
        "#d8f0d2",
    )
    box(
        ax,
        9.5,
        3.0,
        "SECONDARY active",
        "requests go to the secondary;\na failure may be replayed\non the primary",
        "#fbe7b5",
    )
    arrow(ax, (4.5, 3.8), (7.5, 3.8), -0.3)
    ax.text(
        6.0,
        5.0,
        "primary: unhealthy_after consecutive failures\n"
        "(health checks + real requests)\nand the secondary is healthy",
        ha="center",
        fontsize=9,
    )
    arrow(ax, (7.5, 2.2), (4.5, 2.2), -0.3)
    ax.text(
        6.0,
        0.6,
        "primary: healthy_after consecutive passes\n(health checks + real requests)",
        ha="center",
        fontsize=9,
    )
    ax.text(
        6.0,
        -1.2,
        "a run of equal observations flips a verdict: a primary alternating pass/fail "
        "never moves traffic  ·  both unhealthy: traffic stays",
        ha="center",
        fontsize=8,
        color="#444444",
    )
    ax.set_title("FailoverClient: the stateful switch (hysteresis)", fontsize=14, fontweight="bold")
    fig.savefig(OUT, dpi=110, bbox_inches="tight", facecolor="white")


if __name__ == "__main__":
    main()
