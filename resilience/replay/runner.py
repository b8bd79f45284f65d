"""Putting it together: open the log, pick a parser, replay, collect the result.

Split in two so the command line can tell usage errors from the run:
:func:`prepare` raises ``ValueError``/``OSError`` for anything the user can
fix (missing file, unknown format, absent CSV column) before a single line is
replayed; :func:`run` then never raises for bad input, it counts it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from resilience.ratelimit.algorithms import Algorithm
from resilience.replay.badlines import BadLines
from resilience.replay.clf import ClfParser
from resilience.replay.engine import DEFAULT_REORDER_WINDOW, Replay, ReplayResult
from resilience.replay.key_spec import KeySpec
from resilience.replay.source import FORMATS, Source, detect_format
from resilience.replay.structured import CsvParser, JsonlParser

__all__ = ["Parser", "Prepared", "ReplayOptions", "prepare", "replay_file", "run"]

BY_IP = KeySpec("ip")
LineFilter = Callable[[Iterator[str], Source], Iterator[str]]


class Parser(Protocol):
    """Turns lines into ``(time, key)`` records and reports the lines it could not use."""

    name: str

    def describe(self) -> str: ...

    def records(
        self, lines: Iterable[str], bad: Callable[[int, str], None]
    ) -> Iterator[tuple[float, str]]: ...


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """Everything ``resilience replay`` takes, as plain data."""

    path: str
    policies: Sequence[tuple[str, Algorithm]]
    key: KeySpec = BY_IP
    input_format: str = "auto"
    time_field: str | None = None
    key_field: str | None = None
    max_keys: int = 1_000_000
    timeline: bool = False
    bad_lines: int = 10
    reorder_window: float = DEFAULT_REORDER_WINDOW


@dataclass(slots=True)
class Prepared:
    """An opened source with its parser, ready to run."""

    options: ReplayOptions
    source: Source
    parser: Parser


def make_parser(options: ReplayOptions, sample: list[str], name: str) -> Parser:
    """The parser for the requested (or detected) format; ``ValueError`` if it cannot work."""
    fmt = options.input_format
    if fmt == "auto":
        fmt = detect_format(sample, name)
    elif fmt not in FORMATS:
        raise ValueError(f"format must be auto, {', '.join(FORMATS)}; got {fmt!r}")
    if fmt == "clf":
        if options.time_field or options.key_field:
            raise ValueError(
                "--time-field and --key-field apply to jsonl and csv input; "
                "this input is Common/Combined Log Format"
            )
        return ClfParser(options.key)
    if fmt == "jsonl":
        return JsonlParser(options.key, options.time_field, options.key_field, sample)
    return CsvParser(options.key, sample, options.time_field, options.key_field)


def prepare(options: ReplayOptions) -> Prepared:
    """Open the input and choose its parser; raises ``OSError`` or ``ValueError``."""
    if not options.policies:
        raise ValueError("give at least one --policy")
    source = Source(options.path)
    try:
        parser = make_parser(options, source.sample, options.path)
    except BaseException:
        source.close()
        raise
    return Prepared(options, source, parser)


def run(prepared: Prepared, line_filter: LineFilter | None = None) -> ReplayResult:
    """Replay the prepared input through every policy; bad lines are counted, not raised."""
    options = prepared.options
    source = prepared.source
    bad = BadLines(options.bad_lines)
    replay = Replay(
        options.policies,
        max_keys=options.max_keys,
        timeline=options.timeline,
        reorder_window=options.reorder_window,
    )
    with source:
        lines = source.lines()
        if line_filter is not None:
            lines = line_filter(lines, source)
        replay.feed(prepared.parser.records(lines, bad.add))
    return replay.result(
        source=options.path,
        input_format=prepared.parser.describe(),
        key=str(options.key),
        bad=bad,
    )


def replay_file(options: ReplayOptions, line_filter: LineFilter | None = None) -> ReplayResult:
    """:func:`prepare` then :func:`run`: the whole replay as one call."""
    return run(prepare(options), line_filter)
