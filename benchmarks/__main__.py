"""Run every ``benchmarks/bench_*.py`` module and print its rows as Markdown tables.

``python -m benchmarks`` runs them all; ``python -m benchmarks ratelimit breaker``
runs only the modules whose name contains one of the words.  The tables are
plain Markdown so that a run can be pasted into ``benchmarks/RESULTS.md``
as is; ``--json FILE`` also writes the raw rows.  A module that cannot be
imported because an optional dependency is missing is reported and skipped;
a module that crashes is reported with its traceback and the others still
run (the exit status is then 1).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import pkgutil
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import benchmarks

Row = dict[str, Any]


def discover() -> list[str]:
    """Names of the benchmark modules, sorted (``bench_breaker``, ``bench_ratelimit``...)."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(benchmarks.__path__)
        if info.name.startswith("bench_") and not info.ispkg
    )


def select(names: Sequence[str], words: Sequence[str]) -> list[str]:
    if not words:
        return list(names)
    return [name for name in names if any(word.lower() in name.lower() for word in words)]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"{platform.python_implementation()} {platform.python_version()}{load}"
    )


def fmt(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value).replace("|", "\\|")


def markdown(rows: Sequence[Row]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key != "table" and key not in columns)
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines.extend("| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in rows)
    return "\n".join(lines)


def tables(module: str, rows: Sequence[Row]) -> list[tuple[str, list[Row]]]:
    """Group rows by their ``"table"`` key, keeping first-seen order."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(str(row.get("table", module)), []).append(row)
    return list(groups.items())


def run_module(name: str) -> tuple[list[Row] | None, str | None]:
    """Import and run one module; return (rows, None) or (None, why it did not run)."""
    try:
        module: ModuleType = importlib.import_module(f"benchmarks.{name}")
    except ImportError as exc:
        return None, f"skipped: cannot import ({type(exc).__name__}: {exc})"
    run = getattr(module, "run", None)
    if not callable(run):
        return None, "skipped: no run() function"
    try:
        rows = run()
    except ModuleNotFoundError as exc:  # an optional peer imported lazily inside run()
        return None, f"skipped: {exc}"
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise TypeError(f"{name}.run() must return a list of dicts, got {type(rows).__name__}")
    return rows, None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("only", nargs="*", help="run only modules whose name contains a word")
    parser.add_argument("--list", action="store_true", help="list the modules and exit")
    parser.add_argument("--json", metavar="FILE", help="also write every row to FILE")
    args = parser.parse_args(argv)

    names = select(discover(), args.only)
    if args.list:
        print("\n".join(names))
        return 0
    if not names:
        print(f"no benchmark module matches {args.only}", file=sys.stderr)
        return 2

    command = "python -m benchmarks" + "".join(f" {w}" for w in args.only)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"Command: `{command}`  \nMachine: {machine()}  \nDate: {now}\n")
    failed = False
    results: dict[str, Any] = {}
    for name in names:
        print(f"## {name}\n", flush=True)
        started = time.perf_counter()
        try:
            rows, why = run_module(name)
        except Exception:  # report and go on with the other modules
            failed = True
            print("FAILED:\n\n```\n" + traceback.format_exc() + "```\n", flush=True)
            results[name] = {"error": traceback.format_exc()}
            continue
        if rows is None:
            print(f"{why}\n", flush=True)
            results[name] = {"skipped": why}
            continue
        for title, group in tables(name, rows):
            print(f"### {title}\n\n{markdown(group)}\n", flush=True)
        print(f"({name}: {time.perf_counter() - started:.0f} s)\n", flush=True)
        results[name] = rows
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(
                {"command": command, "machine": machine(), "date": now, **results},
                out,
                indent=1,
                default=str,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
