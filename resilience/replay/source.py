"""Opening a log (plain, gzip or standard input) and telling its format."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

from resilience.replay.clf import CLF_LINE

__all__ = ["FORMATS", "Format", "Source", "detect_format"]

Format = Literal["clf", "jsonl", "csv"]
FORMATS: tuple[Format, ...] = ("clf", "jsonl", "csv")

SAMPLE_LINES = 20


class Source:
    """An open log as text lines, with how far through the file we are.

    ``"-"`` reads standard input.  Gzip files are recognised by their magic
    bytes.  Undecodable bytes become U+FFFD instead of stopping the run: the
    line then either still parses or is counted as bad.
    """

    def __init__(self, path: str) -> None:
        self.name = path
        self._raw: io.BufferedReader | None = None
        self.size: int | None = None
        stream: IO[bytes] | gzip.GzipFile
        if path == "-":
            stream = sys.stdin.buffer
        else:
            raw = self._raw = open(path, "rb")  # noqa: SIM115 - closed by close()
            stream = raw
        try:
            if self._raw is not None:
                self.size = os.fstat(self._raw.fileno()).st_size
                if self._raw.peek(2)[:2] == b"\x1f\x8b":
                    stream = gzip.GzipFile(fileobj=self._raw, mode="rb")
            self._text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
            self.sample = list(itertools.islice(self._text, SAMPLE_LINES))
        except BaseException:
            self.close()
            raise

    def lines(self) -> Iterator[str]:
        """Every line, the sample first."""
        return itertools.chain(self.sample, self._text)

    def position(self) -> int:
        """Bytes of the file consumed so far (compressed bytes for gzip)."""
        return self._raw.tell() if self._raw is not None else 0

    def close(self) -> None:
        """Close the file; standard input is left open for whoever owns it."""
        text = getattr(self, "_text", None)
        if self._raw is None:
            if text is not None and not text.closed:
                text.detach()  # else collecting the wrapper would close sys.stdin
            return
        if text is not None:
            text.close()  # closes a GzipFile, which leaves the raw file open
        self._raw.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def detect_format(sample: list[str], name: str = "") -> Format:
    """Guess the format from the first lines (then the file name).

    JSON objects win if most non-blank sample lines start with ``{``; any
    line matching the access-log layout makes it CLF; otherwise a first line
    with a delimiter is taken as a CSV header.
    """
    lines = [line for line in sample if line.strip()]
    if not lines:
        return "clf"  # empty input: nothing will be replayed whatever the format
    objects = 0
    for line in lines:
        if line.lstrip().startswith("{"):
            try:
                json.loads(line)
            except ValueError:
                continue
            objects += 1
    if objects * 2 > len(lines):
        return "jsonl"
    if any(CLF_LINE.match(line) for line in lines):
        return "clf"
    suffix = Path(name.removesuffix(".gz")).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv") or any(d in lines[0] for d in ",;\t|"):
        return "csv"
    raise ValueError(
        f"cannot tell the format of {name or 'the input'} from its first lines; "
        "pass --format clf, jsonl or csv"
    )
