"""The ``resilience`` command.

``resilience demo`` runs the whole library on a payments service under stress
(``docs/demo.md``).  ``resilience replay FILE --policy SPEC ...`` replays a traffic log through
rate-limiting policies on the log's own timestamps and compares them.  Usage
mistakes (a missing file, an unknown policy, a CSV without the named column)
print one argparse-style line and exit with status 2, never a traceback.
Exit status 1 means the input held nothing that could be replayed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from resilience.ratelimit.algorithms import Algorithm
from resilience.ratelimit.spec import ALGORITHMS, parse_policy
from resilience.replay.engine import DEFAULT_REORDER_WINDOW
from resilience.replay.key_spec import KeySpec

__all__ = ["build_parser", "main"]

_POLICY_HELP = (
    "a rate-limiting policy, '<algorithm>:<rate>[,option=value...]', e.g. "
    "'gcra:100/minute,burst=20', 'fixed-window:100/minute', "
    "'sliding-counter:100/minute,buckets=4', 'leaky-shape:100/minute,capacity=20'; "
    "repeat to compare several. Algorithms: " + ", ".join(sorted(ALGORITHMS))
)


def _policy(text: str) -> tuple[str, Algorithm]:
    try:
        return text, parse_policy(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _key(text: str) -> KeySpec:
    try:
        return KeySpec.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _whole(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            if minimum == 0:
                raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_positive = _whole(1)
_non_negative = _whole(0)


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, zero or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.0 <= value < math.inf:  # NaN fails both comparisons
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from resilience import __version__

    parser = argparse.ArgumentParser(
        prog="resilience", description="Resilience patterns for Python services."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    replay = commands.add_parser(
        "replay",
        help="replay a traffic log through rate-limiting policies and compare them",
        description=(
            "Replay an access log (Common/Combined Log Format), JSON lines or CSV through one "
            "or more rate-limiting policies, on the log's own timestamps, and report per "
            "policy what was admitted, rejected, the most one key got through in any window, "
            "and the queueing delay shaping added."
        ),
    )
    replay.add_argument(
        "file", metavar="FILE", help="the log to replay ('-' for stdin; .gz read directly)"
    )
    replay.add_argument(
        "--policy", "-p", dest="policies", action="append", type=_policy, required=True,
        metavar="SPEC", help=_POLICY_HELP,
    )  # fmt: skip
    replay.add_argument(
        "--key", "-k", type=_key, default="ip", metavar="ip|user|path|header:NAME",
        help="what requests are counted against (default: ip)",
    )  # fmt: skip
    replay.add_argument(
        "--format", "-f", dest="input_format", default="auto",
        choices=("auto", "clf", "jsonl", "csv"), help="input format (default: auto-detect)",
    )  # fmt: skip
    replay.add_argument(
        "--time-field", metavar="NAME",
        help="jsonl/csv: the field holding the timestamp (default: the first of timestamp, "
        "time, ts, @timestamp, ... present)",
    )  # fmt: skip
    replay.add_argument(
        "--key-field", metavar="NAME",
        help="jsonl/csv: the field holding the key (default: chosen from --key, e.g. ip, "
        "client_ip, remote_addr for ip); JSON accepts dotted paths",
    )  # fmt: skip
    replay.add_argument(
        "--top", type=_non_negative, default=10, metavar="N",
        help="show each policy's N most rejected keys (default: 10; 0 hides the table)",
    )  # fmt: skip
    replay.add_argument(
        "--plot", metavar="OUT.png", help="draw admitted vs rejected over time per policy "
        "(needs matplotlib: the 'plot' extra)",
    )  # fmt: skip
    replay.add_argument(
        "--bad-lines", type=_non_negative, default=10, metavar="N",
        help="list the first N unusable lines with their line numbers (default: 10)",
    )  # fmt: skip
    replay.add_argument(
        "--max-keys", type=_positive, default=1_000_000, metavar="N",
        help="bound on live keys per policy, as MemoryStore(max_keys=N) (default: 1000000)",
    )  # fmt: skip
    replay.add_argument(
        "--reorder-window", type=_seconds, default=DEFAULT_REORDER_WINDOW, metavar="SECONDS",
        help="replay lines in time order when they trail the newest line by at most this "
        "much (access logs are written at request completion); later lines are counted as "
        f"late (default: {DEFAULT_REORDER_WINDOW:g}; 0 replays in file order)",
    )  # fmt: skip
    replay.add_argument(
        "--json", action="store_true", help="print the results as JSON instead of tables"
    )
    replay.add_argument(
        "--no-progress", action="store_true", help="no progress bar (it shows only for big "
        "files on an interactive terminal)",
    )  # fmt: skip
    replay.set_defaults(subparser=replay)
    _add_demo(commands)
    return parser


def _demo_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 5.0 <= value <= 600.0:
        raise argparse.ArgumentTypeError(f"must be between 5 and 600 seconds, got {text}")
    return value


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="run a payments service under stress on loopback and watch the patterns work",
        description=(
            "Start two payments origins with a fault script (latency spikes, 503s, a full "
            "outage of the primary), an API behind per-plan rate limits, idempotency keys "
            "and a bulkhead that calls them through the failover client, and a traffic "
            "generator, all on 127.0.0.1; show them live, then a summary and a verdict "
            "from the origins' own ledger. Exit status 1 when the verdict fails. Needs "
            "the 'demo' extra (pip install 'resilience-patterns[demo]')."
        ),
    )
    demo.add_argument(
        "--duration", type=_demo_seconds, default=20.0, metavar="SECONDS",
        help="seconds of traffic (default: 20; the whole run takes about 6 s more)",
    )  # fmt: skip
    demo.add_argument(
        "--seed", type=_non_negative, default=1, metavar="N",
        help="seed of the fault script and the clients (default: 1)",
    )  # fmt: skip
    demo.add_argument(
        "--plot", metavar="OUT.png", help="draw the timeline to a PNG (needs matplotlib)"
    )
    view = demo.add_mutually_exclusive_group()
    view.add_argument(
        "--live", dest="live", action="store_true", default=None,
        help="the live dashboard (default on a terminal)",
    )  # fmt: skip
    view.add_argument(
        "--plain", dest="live", action="store_false",
        help="plain progress lines (default when the output is not a terminal)",
    )  # fmt: skip
    demo.set_defaults(subparser=demo)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 nothing replayed, 2 usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports usage errors (and --help) by exiting
        return exc.code if isinstance(exc.code, int) else 2
    if args.command == "demo":
        try:
            return _demo(args, args.subparser)
        except SystemExit as exc:  # a usage error found after parsing (--plot, the extra)
            return exc.code if isinstance(exc.code, int) else 2
    if args.command == "replay":
        try:
            return _replay(args, args.subparser)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 2
        except KeyboardInterrupt:
            print("resilience replay: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `resilience replay ... | head`: the reader left
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 1
    return 2  # pragma: no cover - argparse requires a command


def _replay(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from rich.console import Console

    from resilience.replay.report import as_dict, progress_filter, render
    from resilience.replay.runner import ReplayOptions, prepare, run

    if args.plot:
        _check_plot(args.plot, parser)
    options = ReplayOptions(
        path=args.file,
        policies=args.policies,
        key=args.key,
        input_format=args.input_format,
        time_field=args.time_field,
        key_field=args.key_field,
        max_keys=args.max_keys,
        timeline=bool(args.plot),
        bad_lines=args.bad_lines,
        reorder_window=args.reorder_window,
    )
    try:
        prepared = prepare(options)
    except FileNotFoundError:
        parser.error(f"{args.file}: no such file")
    except IsADirectoryError:
        parser.error(f"{args.file}: is a directory")
    except (OSError, EOFError) as exc:
        parser.error(f"{args.file}: cannot read it: {getattr(exc, 'strerror', None) or exc}")
    except ValueError as exc:
        parser.error(str(exc))

    err = Console(stderr=True)
    try:
        result = run(prepared, None if args.no_progress else progress_filter(err))
    except (OSError, EOFError) as exc:
        print(f"resilience replay: error: reading {args.file} failed: {exc}", file=sys.stderr)
        return 1

    if args.json:
        print(json.dumps(as_dict(result, args.top), indent=2))
    else:
        render(result, Console(), args.top)
    if args.plot and result.requests:
        from resilience.replay.plot import plot

        try:
            out = plot(result, args.plot)
        except OSError as exc:
            print(f"resilience replay: error: cannot write {args.plot}: {exc}", file=sys.stderr)
            return 1
        print(f"plot written to {out}", file=sys.stderr)
    if not result.requests:
        print(
            f"resilience replay: error: no usable request in {args.file} "
            f"({result.bad.count} bad lines)",
            file=sys.stderr,
        )
        return 1
    return 0


def _demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        from resilience.demo import main as demo_main
    except ImportError as exc:
        parser.error(
            f"the demo needs the 'demo' extra ({exc.name} is missing): "
            "pip install 'resilience-patterns[demo]'"
        )
    if args.plot:
        _check_plot(args.plot, parser)
    return demo_main(duration=args.duration, seed=args.seed, plot=args.plot, live=args.live)


def _check_plot(path: str, parser: argparse.ArgumentParser) -> None:
    """Fail before a long replay, not after it: matplotlib present, directory exists."""
    from resilience.replay.plot import PlotUnavailable, load_pyplot

    try:
        load_pyplot()
    except PlotUnavailable as exc:
        parser.error(str(exc))
    folder = Path(path).parent
    if not folder.is_dir():
        parser.error(f"--plot: directory {folder} does not exist")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
