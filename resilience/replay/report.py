"""What a replay prints: rich tables and a plain-words explanation, or JSON.

The terminal report: one row per policy (admitted, rejected, the most one key
got through in any window of the policy's period), the queueing delay that
shaping policies added, each policy's most-rejected keys, a paragraph saying
which policies held the line and why the others did not, and notes on bad or
out-of-order lines.  Tables stay within 80 columns: policy strings are broken
at ``:`` and ``,``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from resilience.replay.engine import PolicyResult, ReplayResult
from resilience.replay.runner import LineFilter
from resilience.replay.source import Source

__all__ = ["as_dict", "explain", "progress_filter", "render"]

_REASONS = {
    "fixed-window": (
        "its counter restarts at every aligned window edge, so a client can spend the whole "
        "limit just before an edge and again just after it"
    ),
    "sliding-counter": (
        "it estimates the previous window's share by weighting that window's count, which "
        "lets part of a burst across an edge through"
    ),
}
_BUCKETS = ("token-bucket", "gcra", "leaky-bucket")
_CHUNK = 1 << 14


# -- formatting helpers ---------------------------------------------------------


def _count(n: int) -> str:
    return f"{n:,}"


def _plural(n: int, noun: str) -> str:
    return f"{_count(n)} {noun}" + ("" if n == 1 else "s")


def _seconds(value: float) -> str:
    if value == 0:
        return "0s"
    if value < 0.01:
        return f"{value * 1000:.1f}ms"
    if value < 120:
        return f"{value:.2f}s" if value < 10 else f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _period(seconds: float) -> str:
    return f"{seconds:g}s" if seconds < 120 or seconds % 60 else f"{seconds / 60:g}min"


class _Times:
    """Formats log times: time of day only when the whole log is within one UTC day."""

    def __init__(self, first: float | None, last: float | None) -> None:
        self.same_day = (
            first is not None and last is not None and _utc(first).date() == _utc(last).date()
        )

    def __call__(self, t: float) -> str:
        moment = _utc(t)
        text = moment.strftime("%H:%M:%S" if self.same_day else "%Y-%m-%d %H:%M:%S")
        if moment.microsecond:
            text += f".{moment.microsecond // 1000:03d}"
        return text


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _header(policy: str) -> str:
    """A policy string broken at ':' and ',' so tables stay narrow."""
    return policy.replace(":", "\n", 1).replace(",", "\n")


# -- the report ------------------------------------------------------------------


def _summary(result: ReplayResult) -> Text:
    text = Text()
    text.append(f"Replayed {_count(result.requests)} requests", style="bold")
    text.append(f" from {result.source}\n")
    text.append(f"{result.input_format}; key {result.key}")
    if result.first_time is not None and result.last_time is not None:
        first, last = result.first_time, result.last_time
        text.append(
            f"; {_utc(first):%Y-%m-%d %H:%M:%S} to {_utc(last):%Y-%m-%d %H:%M:%S} UTC "
            f"({_seconds(last - first)})"
        )
    text.append(
        f"; {_plural(result.bad.count, 'bad line')}; {_count(result.out_of_order)} out of order"
    )
    return text


def _policy_table(result: ReplayResult) -> Table:
    when = _Times(result.first_time, result.last_time)
    table = Table(title="Policies side by side", title_justify="left", title_style="bold")
    table.add_column("policy", style="cyan", no_wrap=True)
    table.add_column("admitted", justify="right")
    table.add_column("rejected", justify="right")
    table.add_column("most admitted\nfor one key in\none period", justify="right")
    table.add_column("that key,\nwindow start", overflow="fold")
    for p in result.policies:
        share = p.rejected / (p.admitted + p.rejected) if p.admitted + p.rejected else 0.0
        peak = Text(f"{_count(p.peak)} in {_period(p.period)}")
        peak.stylize("bold red" if p.peak > p.limit else "green")
        peak.append(f"\n{p.peak / p.limit:.2f}x limit", style="dim")
        where = f"{p.peak_key}\n{when(p.peak_start)}" if p.peak_key is not None else "-"
        rejected = Text(_count(p.rejected))
        rejected.append(f"\n{share:.1%}", style="dim")
        table.add_row(_header(p.policy), _count(p.admitted), rejected, peak, where)
    return table


def _delay_table(result: ReplayResult) -> Table | None:
    shaped = [p for p in result.policies if p.delay is not None]
    if not shaped:
        return None
    table = Table(
        title="Queueing delay added by shaping (over admitted requests)",
        title_justify="left",
        title_style="bold",
    )
    table.add_column("policy", style="cyan", no_wrap=True)
    for name in ("delayed", "mean", "p50", "p95", "p99", "max"):
        table.add_column(name, justify="right")
    for p in shaped:
        d = p.delay
        assert d is not None
        table.add_row(
            _header(p.policy),
            _count(d.delayed),
            *(_seconds(v) for v in (d.mean, d.p50, d.p95, d.p99, d.max)),
        )
    return table


def _top_keys_table(result: ReplayResult, top: int) -> Table | None:
    rows = [(p, p.top_rejected(top)) for p in result.policies]
    if not any(keys for _, keys in rows):
        return None
    table = Table(
        title=f"Most rejected keys (top {top} per policy)",
        title_justify="left",
        title_style="bold",
    )
    table.add_column("policy", style="cyan", no_wrap=True)
    table.add_column("key (rejected)", ratio=1)
    for p, keys in rows:
        cell = Text()
        for i, (key, n) in enumerate(keys):
            if i:
                cell.append("  ")
            cell.append(key)
            cell.append(f" ({_count(n)})", style="dim")
        table.add_row(_header(p.policy), cell if keys else Text("-", style="dim"))
    return table


def _reason(p: PolicyResult) -> str:
    kind = p.algorithm.kind
    if kind in _BUCKETS:
        burst = int(p.algorithm.capacity)
        return (
            f"a full bucket lets a burst of {burst} through on top of the steady rate, so up "
            f"to {_count(burst + p.limit)} can pass in one period"
        )
    return _REASONS.get(kind, "")


def explain(result: ReplayResult) -> str:
    """One paragraph: who exceeded their limit in some window, who held the line, and why."""
    if not result.requests:
        return "Nothing was replayed."
    sentences: list[str] = []
    held: list[str] = []
    for p in result.policies:
        if p.peak > p.limit:
            reason = _reason(p)
            sentences.append(
                f"{p.policy} let {p.peak_key} through {_count(p.peak)} times within one "
                f"{_period(p.period)} window, {p.peak / p.limit:.2f}x its limit of "
                f"{_count(p.limit)}" + (f": {reason}." if reason else ".")
            )
        elif p.admitted:
            held.append(p.policy)
    if held:
        names = held[0] if len(held) == 1 else ", ".join(held[:-1]) + " and " + held[-1]
        sentences.append(
            f"{names} held the line: no key got more than the limit within any window "
            "of the period."
        )
    for p in result.policies:
        d = p.delay
        if d is not None and d.delayed:
            sentences.append(
                f"{p.policy} queued instead of rejecting: it delayed {_count(d.delayed)} requests "
                f"(mean {_seconds(d.mean)}, p99 {_seconds(d.p99)}, max {_seconds(d.max)}) so they "
                "leave at the steady rate, and "
                + (
                    f"rejected {_count(p.rejected)} only when its queue was full."
                    if p.rejected
                    else "its queue never overflowed."
                )
            )
    return " ".join(sentences)


def _notes(result: ReplayResult) -> Iterator[RenderableType]:
    bad = result.bad
    if bad.count:
        text = Text(f"{_plural(bad.count, 'bad line')} skipped", style="yellow")
        if bad.first:
            shown = len(bad.first)
            text.append(f" (first {shown}):" if shown < bad.count else ":")
            for lineno, reason in bad.first:
                text.append(f"\n  line {lineno}: {reason}")
        yield text
    if result.out_of_order:
        yield _order_note(result)
    for p in result.policies:
        if p.store_refused:
            yield Text(
                f"{p.policy}: the store refused {_count(p.store_refused)} new keys (all "
                "--max-keys keys still limited); those requests were admitted (fail open).",
                style="yellow",
            )


def _order_note(result: ReplayResult) -> Text:
    """Out-of-order lines: put back in order by the window, or late and squeezed."""
    older = (
        f"{_plural(result.out_of_order, 'line')} older than a line above them (by up to "
        f"{_seconds(result.max_lag)})"
    )
    window = _period(result.reorder_window)
    if not result.late:
        return Text(f"{older}, put back in time order by the {window} reorder window.")
    fix = math.ceil(result.max_lag)
    return Text(
        f"{older}. {_plural(result.late, 'line')} arrived more than the {window} reorder "
        f"window late: they were replayed at the replay's current time, squeezed together "
        f"with later traffic, so bucket policies may reject more than they would have; "
        f"--reorder-window {fix} replays every line in time order.",
        style="yellow",
    )


def render(result: ReplayResult, console: Console, top: int = 10) -> None:
    """Print the report."""
    parts: list[RenderableType] = [_summary(result), Text()]
    if result.requests:
        parts.append(_policy_table(result))
        for table in (_delay_table(result), _top_keys_table(result, top) if top > 0 else None):
            if table is not None:
                parts += [Text(), table]
        parts += [Text(), Text(explain(result))]
    notes = list(_notes(result))
    if notes:
        parts += [Text(), *notes]
    console.print(Group(*parts))


# -- JSON ------------------------------------------------------------------------


def _iso(t: float | None) -> str | None:
    return None if t is None else _utc(t).isoformat().replace("+00:00", "Z")


def _policy_dict(p: PolicyResult, top: int) -> dict[str, Any]:
    d = p.delay
    return {
        "policy": p.policy,
        "algorithm": {"kind": p.algorithm.kind} | p.algorithm.params(),
        "requests": p.admitted + p.rejected,
        "admitted": p.admitted,
        "rejected": p.rejected,
        "top_rejected": [{"key": k, "rejected": n} for k, n in p.top_rejected(top)],
        "peak": {
            "admitted": p.peak,
            "key": p.peak_key,
            "window_start": _iso(p.peak_start) if p.peak_key is not None else None,
            "period": p.period,
            "limit": p.limit,
        },
        "delay": None
        if d is None
        else {
            "delayed": d.delayed,
            "mean": d.mean,
            "p50": d.p50,
            "p95": d.p95,
            "p99": d.p99,
            "max": d.max,
        },
        "store_refused": p.store_refused,
    }


def as_dict(result: ReplayResult, top: int = 10) -> dict[str, Any]:
    """The result as plain data (``--json``)."""
    return {
        "source": result.source,
        "format": result.input_format,
        "key": result.key,
        "requests": result.requests,
        "first_time": _iso(result.first_time),
        "last_time": _iso(result.last_time),
        "out_of_order": result.out_of_order,
        "max_lag": result.max_lag,
        "reorder_window": result.reorder_window,
        "late": result.late,
        "reorder_buffer_peak": result.buffer_peak,
        "bad_lines": {
            "count": result.bad.count,
            "first": [{"line": n, "reason": r} for n, r in result.bad.first],
        },
        "policies": [_policy_dict(p, top) for p in result.policies],
    }


# -- progress --------------------------------------------------------------------


def progress_filter(console: Console, min_bytes: int = 4 << 20) -> LineFilter:
    """A line filter that shows a progress bar for big files on an interactive ``console``."""

    def wrap(lines: Iterator[str], source: Source) -> Iterator[str]:
        if source.size is None or source.size < min_bytes or not console.is_terminal:
            return lines
        return _with_progress(lines, source, console)

    return wrap


def _with_progress(lines: Iterator[str], source: Source, console: Console) -> Iterator[str]:
    columns = (
        TextColumn("replaying {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(source.name, total=source.size)
        while chunk := list(itertools.islice(lines, _CHUNK)):
            yield from chunk
            progress.update(task, completed=source.position())
