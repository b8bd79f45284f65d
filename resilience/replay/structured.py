"""JSON lines and CSV logs: a timestamp field and a key field per record.

Field names are found, not demanded: unless ``--time-field`` / ``--key-field``
say otherwise, the first of a list of usual names that the data has is used
(``timestamp``, ``time``, ``ts``, ``@timestamp``...; for ``--key ip``:
``ip``, ``client_ip``, ``remote_addr``...).  Matching ignores case and treats
``-`` and ``_`` alike; JSON names may be dotted paths into nested objects
(``request.headers.x-api-key``).  Timestamps are epoch numbers (seconds, or
milli/micro/nanoseconds by magnitude), ISO 8601 strings, or the access-log
layout.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from resilience.replay.badlines import snippet
from resilience.replay.key_spec import MAX_KEY_LENGTH, KeySpec, request_path
from resilience.replay.timeparse import TimeCache, epoch_seconds, text_time

__all__ = ["KEY_FIELDS", "TIME_FIELDS", "CsvParser", "JsonlParser", "key_fields"]

TIME_FIELDS = (
    "timestamp", "time", "ts", "@timestamp", "datetime", "date", "time_iso8601", "time_local",
    "msec", "start_time", "when",
)  # fmt: skip
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "ip": (
        "ip", "client_ip", "remote_addr", "remote_ip", "clientip", "client_addr", "src_ip",
        "client.ip", "source.ip",
    ),
    "user": ("user", "remote_user", "user_id", "userid", "username", "user.id", "user.name"),
    "path": ("path", "request_path", "uri", "request_uri", "url", "url.path", "request"),
}  # fmt: skip

Bad = Callable[[int, str], None]


def key_fields(key: KeySpec) -> tuple[str, ...]:
    """The field names tried, in order, for ``key`` when ``--key-field`` is not given."""
    if key.kind == "header":
        name = key.header
        return (f"headers.{name}", f"request.headers.{name}", f"http_{name}", name)
    return KEY_FIELDS[key.kind]


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def lookup(obj: dict[str, Any], name: str) -> Any:
    """``obj[name]``, else the dotted path; each step tolerant of case and ``-``/``_``."""
    value = obj.get(name)
    if value is not None:
        return value
    current: Any = obj
    for part in name.split("."):
        if not isinstance(current, dict):
            return None
        found = current.get(part)
        if found is None:
            want = _norm(part)
            for field, item in current.items():
                if isinstance(field, str) and _norm(field) == want:
                    found = item
                    break
            else:
                return None
        current = found
    return current


def key_text(value: Any) -> str | None:
    """A key from a field value: strings and numbers; a list (repeated header) joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return None


def _time_of(value: Any, cache: TimeCache) -> float:
    if isinstance(value, str):
        return cache(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return epoch_seconds(value)
    raise ValueError(f"time field holds a {type(value).__name__}, not a timestamp")


def _check_key(raw: Any, field: str, is_path: bool) -> tuple[str | None, str]:
    """The key, or ``None`` and why not."""
    if raw is None or raw == "":
        return None, f"no {field!r} field"
    text = key_text(raw)
    if text is None:
        return None, f"field {field!r} holds a {type(raw).__name__}, not a key"
    if is_path:
        path = request_path(text)
        if path is None:
            return None, f"field {field!r} has no request path: {snippet(text)}"
        text = path
    if len(text) > MAX_KEY_LENGTH:
        return None, f"key is {len(text)} characters; at most {MAX_KEY_LENGTH} are accepted"
    return text, ""


class JsonlParser:
    """One JSON object per line."""

    name = "jsonl"

    def __init__(
        self,
        key: KeySpec,
        time_field: str | None = None,
        key_field: str | None = None,
        sample: Sequence[str] = (),
    ) -> None:
        self.key = key
        self._time_names = (time_field,) if time_field else TIME_FIELDS
        self._key_names = (key_field,) if key_field else key_fields(key)
        self.time_field = time_field
        self.key_field = key_field
        objects = [obj for obj in (_loads(line) for line in sample) if isinstance(obj, dict)]
        for obj in objects:
            self.time_field = self.time_field or _pick(obj, self._time_names)
            self.key_field = self.key_field or _pick(obj, self._key_names)
        if objects and not any(_pick(obj, self._time_names) for obj in objects):
            raise ValueError(
                f"none of the first {len(objects)} JSON lines has a time field "
                f"(looked for {', '.join(self._time_names)}); pass --time-field"
            )

    def describe(self) -> str:
        return f"JSON lines (time field {self.time_field!r}, key field {self.key_field!r})"

    def records(self, lines: Iterable[str], bad: Bad) -> Iterator[tuple[float, str]]:
        loads = json.loads
        cache = TimeCache(text_time)
        is_path = self.key.kind == "path"
        for lineno, line in enumerate(lines, 1):
            try:
                obj = loads(line)
            except ValueError as exc:
                if line.strip():
                    bad(lineno, f"not JSON ({getattr(exc, 'msg', exc)}): {snippet(line)}")
                continue
            except RecursionError:
                bad(lineno, "JSON nested too deeply")
                continue
            if type(obj) is not dict:
                bad(lineno, f"a JSON {type(obj).__name__}, not an object")
                continue
            time_field = self.time_field or _pick(obj, self._time_names)
            key_field = self.key_field or _pick(obj, self._key_names)
            if time_field is None:
                bad(lineno, f"no time field (looked for {', '.join(self._time_names)})")
                continue
            if key_field is None:
                bad(
                    lineno,
                    f"no key field for --key {self.key} (looked for {', '.join(self._key_names)})",
                )
                continue
            self.time_field = time_field
            self.key_field = key_field
            raw_time = obj.get(time_field)
            if raw_time is None:
                raw_time = lookup(obj, time_field)
                if raw_time is None:
                    bad(lineno, f"no {time_field!r} field")
                    continue
            try:
                t = _time_of(raw_time, cache)
            except ValueError as exc:
                bad(lineno, str(exc))
                continue
            raw_key = obj.get(key_field)
            if raw_key is None:
                raw_key = lookup(obj, key_field)
            if raw_key.__class__ is str and not is_path and 0 < len(raw_key) <= MAX_KEY_LENGTH:
                yield t, raw_key
                continue
            k, why = _check_key(raw_key, key_field, is_path)
            if k is None:
                bad(lineno, why)
                continue
            yield t, k


def _loads(line: str) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def _pick(obj: dict[str, Any], names: Sequence[str]) -> str | None:
    for name in names:
        if lookup(obj, name) is not None:
            return name
    return None


class CsvParser:
    """A header row, then one request per row (any delimiter the sniffer recognises)."""

    name = "csv"

    def __init__(
        self,
        key: KeySpec,
        sample: Sequence[str],
        time_field: str | None = None,
        key_field: str | None = None,
    ) -> None:
        self.key = key
        text = "".join(line for line in sample if line.strip())
        try:
            self.dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
                text, delimiters=",;\t|"
            )
        except csv.Error:
            self.dialect = csv.excel
        header = next((row for row in csv.reader(sample, self.dialect) if row), None)
        if header is None:
            raise ValueError("CSV input has no header row")
        self.columns = [c.strip() for c in header]
        self._time_index, self.time_field = self._column(
            (time_field,) if time_field else TIME_FIELDS, "time", "--time-field"
        )
        self._key_index, self.key_field = self._column(
            (key_field,) if key_field else key_fields(key), f"key ({key})", "--key-field"
        )

    def _column(self, names: Sequence[str], what: str, option: str) -> tuple[int, str]:
        normalised = [_norm(c) for c in self.columns]
        for name in names:
            want = _norm(name)
            if want in normalised:
                index = normalised.index(want)
                return index, self.columns[index]
        raise ValueError(
            f"CSV header has no {what} column (looked for {', '.join(names)}; "
            f"columns are {', '.join(self.columns)}); pass {option}"
        )

    def describe(self) -> str:
        return f"CSV (time column {self.time_field!r}, key column {self.key_field!r})"

    def records(self, lines: Iterable[str], bad: Bad) -> Iterator[tuple[float, str]]:
        reader = csv.reader(lines, self.dialect)
        cache = TimeCache(text_time)
        ti = self._time_index
        ki = self._key_index
        need = max(ti, ki) + 1
        is_path = self.key.kind == "path"
        header_seen = False
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                bad(reader.line_num, f"unreadable CSV: {exc}")
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if not header_seen:
                header_seen = True
                continue
            if len(row) < need:
                got = f"only {len(row)} column" + ("" if len(row) == 1 else "s")
                bad(reader.line_num, f"{got}; the header has {len(self.columns)}")
                continue
            try:
                t = cache(row[ti])
            except ValueError as exc:
                bad(reader.line_num, str(exc))
                continue
            k, why = _check_key(row[ki].strip(), self.key_field, is_path)
            if k is None:
                bad(reader.line_num, why)
                continue
            yield t, k
