"""The live view (rich, a few updates per second) and its plain-text twin for pipes and CI."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from resilience.demo.metrics import OUTCOMES, Metrics
from resilience.demo.origins import Ledger
from resilience.demo.verdict import ABUSIVE, Verdict

__all__ = ["LiveView", "PlainView", "Tick", "View", "render_summary"]

SHOWN = ("2xx", "replayed", "429", "503")
COLOURS = {"2xx": "green", "replayed": "cyan", "429": "yellow", "503": "red"}
STATE_COLOURS = {"closed": "green", "half_open": "yellow", "open": "red"}


@dataclass(frozen=True, slots=True)
class Tick:
    """One look at the system, ``t`` seconds after the start."""

    t: float
    phase: str
    rates: dict[str, float]  # outcome -> requests per second over the last second
    p50: float
    p99: float
    active: str
    breaker: str  # the primary's breaker
    bulkhead: int
    bulkhead_queued: int
    capacity: int


class View(Protocol):
    def show(self, tick: Tick) -> None: ...
    def log(self, t: float, text: str) -> None: ...
    def close(self) -> None: ...


def _rates_text(tick: Tick) -> str:
    return " ".join(f"{name}={tick.rates.get(name, 0.0):.0f}/s" for name in SHOWN)


class PlainView:
    """No TTY: one progress line per second and one line per state change."""

    def __init__(self, console: Console, every: float = 1.0) -> None:
        self.console = console
        self.every = every
        self._next = 0.0

    def show(self, tick: Tick) -> None:
        if tick.t + 1e-9 < self._next:
            return
        self._next = tick.t + self.every
        self.console.print(
            f"t={tick.t:5.1f}s phase={tick.phase:<8} {_rates_text(tick)} "
            f"breaker={tick.breaker} active={tick.active} "
            f"bulkhead={tick.bulkhead}/{tick.capacity} "
            f"p50={tick.p50 * 1000:.0f}ms p99={tick.p99 * 1000:.0f}ms",
            highlight=False,
            soft_wrap=True,
        )

    def log(self, t: float, text: str) -> None:
        self.console.print(f"t={t:5.1f}s ** {text}", highlight=False, soft_wrap=True)

    def close(self) -> None:
        return None


class LiveView:
    """A terminal dashboard redrawn a few times a second; state changes scroll above it."""

    def __init__(self, console: Console, duration: float) -> None:
        self.console = console
        self.duration = duration
        self._tick: Tick | None = None
        self._live = Live(self._render(), console=console, refresh_per_second=4, transient=True)
        self._live.start()

    def show(self, tick: Tick) -> None:
        self._tick = tick
        self._live.update(self._render())

    def log(self, t: float, text: str) -> None:
        self._live.console.print(f"[dim]t={t:5.1f}s[/dim] {text}", highlight=False)

    def close(self) -> None:
        self._live.stop()

    def _render(self) -> Panel:
        tick = self._tick
        if tick is None:
            return Panel(
                "starting the origins, the API and the clients...", title="resilience demo"
            )
        table = Table.grid(padding=(0, 2))
        table.add_column(justify="right", style="bold")
        table.add_column()
        rates = Text()
        for name in SHOWN:
            rates.append(f"{name} ", style=COLOURS[name])
            rates.append(f"{tick.rates.get(name, 0.0):5.0f}/s   ")
        table.add_row("requests", rates)
        state = Text(tick.breaker, style=STATE_COLOURS.get(tick.breaker, "white"))
        table.add_row("primary breaker", state)
        active = Text(tick.active, style="green" if tick.active == "primary" else "magenta")
        table.add_row("active origin", active)
        filled = round(20 * tick.bulkhead / max(1, tick.capacity))
        bar = Text("#" * filled + "." * (20 - filled))
        bar.append(f"  {tick.bulkhead}/{tick.capacity} in flight, {tick.bulkhead_queued} queued")
        table.add_row("bulkhead", bar)
        table.add_row("latency", f"p50 {tick.p50 * 1000:6.0f} ms   p99 {tick.p99 * 1000:6.0f} ms")
        title = f"resilience demo  t={tick.t:4.1f}s / {self.duration:.0f}s  phase: {tick.phase}"
        return Panel(Group(table), title=title, expand=False)


def render_summary(
    console: Console,
    metrics: Metrics,
    ledger: Ledger,
    verdict: Verdict,
    clients: list[str],
    policies: dict[str, str],
) -> None:
    """The per-client table, the provider's ledger and the verdict."""
    table = Table(
        title="what each client got",
        title_justify="left",
        caption=f"{ABUSIVE} is the abusive client; replayed: a stored answer to a retried POST",
        caption_justify="left",
    )
    table.add_column("client")
    for name in ("sent", *OUTCOMES):
        table.add_column(name, justify="right")
    table.add_column("RateLimit-Policy")
    per_client: dict[str, Counter[str]] = {name: Counter() for name in clients}
    for sample in metrics.samples:
        per_client.setdefault(sample.client, Counter())[sample.outcome] += 1
    for name, counts in per_client.items():
        row = [name, str(sum(counts.values()))]
        row += [str(counts.get(outcome, 0)) for outcome in OUTCOMES]
        row.append(policies.get(name, ""))
        table.add_row(*row)
    console.print(table)

    v = verdict
    origins = ", ".join(f"{k} {n}" for k, n in sorted(ledger.served.items()))
    lines = [
        f"payments  {v.payments} sent with an Idempotency-Key, {v.confirmed} confirmed, "
        f"{v.retried} retried with the same key",
        f"api       {v.replayed} retries answered from its idempotency records (SQLite)",
        f"provider  {v.received} charge requests reached the origins, {v.charges} executed",
        f"origins   requests served: {origins}",
        f"receipts  {v.tickets} large receipts travelled as claim-check tickets",
    ]
    console.print("\n".join(lines), highlight=False, soft_wrap=True)
    console.print("verdict, from the payments origins' own ledger:", highlight=False)
    for check in v.checks:
        mark = "[green]PASS[/green]" if check.ok else "[bold red]FAIL[/bold red]"
        console.print(f"  {mark}  {check.name}: {check.detail}", highlight=False, soft_wrap=True)
    if v.passed:
        console.print("[bold green]verdict: PASS[/bold green]")
    else:
        console.print("[bold red]verdict: FAIL[/bold red]")
