"""The entry point ``resilience demo`` calls: run, print the summary, plot, exit status."""

from __future__ import annotations

import asyncio
import sys

from rich.console import Console

from resilience.demo.runner import CLIENTS, DemoOptions, DemoResult, run
from resilience.demo.view import render_summary

__all__ = ["main"]


def main(
    duration: float = 20.0,
    seed: int = 1,
    plot: str | None = None,
    live: bool | None = None,
) -> int:
    """Run the demo; 0 when the verdict holds, 1 when it fails, 130 on Ctrl-C, 143 on SIGTERM.

    ``live=None`` picks the dashboard on a terminal and plain progress lines otherwise.
    """
    console = Console()
    if live is None:
        live = console.is_terminal and sys.stdout.isatty()
    if not console.is_terminal:
        console = Console(width=110)  # logs and CI: wide enough that tables do not wrap
    options = DemoOptions(duration=duration, seed=seed, live=live)
    try:
        result: DemoResult = asyncio.run(run(options, console))
    except KeyboardInterrupt:
        console.print("resilience demo: interrupted; everything it started is stopped")
        return 130
    except asyncio.CancelledError:  # SIGTERM cancels the run the same way
        console.print("resilience demo: terminated; everything it started is stopped")
        return 143
    render_summary(console, result.metrics, result.ledger, result.verdict, CLIENTS, result.policies)
    if plot:
        from resilience.demo.plot import plot_timeline

        try:
            out = plot_timeline(result, plot)
        except OSError as exc:
            print(f"resilience demo: error: cannot write {plot}: {exc}", file=sys.stderr)
            return 1
        console.print(f"timeline written to {out}", highlight=False)
    return 0 if result.verdict.passed else 1
