"""Parsing for ``resilience replay``: timestamps, keys, the three formats, detection."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from resilience.replay.badlines import BadLines
from resilience.replay.clf import ClfParser
from resilience.replay.key_spec import KeySpec, request_path
from resilience.replay.source import Source, detect_format
from resilience.replay.structured import CsvParser, JsonlParser
from resilience.replay.timeparse import TimeCache, clf_time, epoch_seconds, text_time

T0 = 971211336.0  # 10/Oct/2000:13:55:36 -0700

COMBINED = (
    '203.0.113.7 - frank [10/Oct/2000:13:55:36 -0700] "GET /a/b?x=1 HTTP/1.1" 200 2326 '
    '"https://ref.example/" "curl/8.5.0"\n'
)
COMMON = '198.51.100.1 - - [10/Oct/2000:13:55:37 -0700] "POST /login HTTP/1.0" 302 -\n'


def parse(
    parser: object, lines: list[str], keep: int = 10
) -> tuple[list[tuple[float, str]], BadLines]:
    bad = BadLines(keep)
    records = list(parser.records(lines, bad.add))  # type: ignore[attr-defined]
    return records, bad


# -- timestamps -------------------------------------------------------------------


def test_clf_time_reads_offsets_and_fractions() -> None:
    assert clf_time("10/Oct/2000:13:55:36 -0700") == T0
    assert clf_time("10/Oct/2000:20:55:36 +0000") == T0
    assert clf_time("10/Oct/2000:22:25:36 +0130") == T0
    assert clf_time("10/Oct/2000:13:55:36.250 -0700") == T0 + 0.25


@pytest.mark.parametrize(
    "text",
    [
        "10/Foo/2000:13:55:36 -0700",
        "31/Feb/2000:13:55:36 -0700",
        "10/Oct/2000:25:55:36 -0700",
        "10/Oct/2000:13:55:36",
        "10/Oct/2000:13:55:36 0700",
        "10/Oct/2000 13:55:36 -0700",
        "",
    ],
)
def test_clf_time_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError, match=r"timestamp|offset"):
        clf_time(text)


def test_text_time_accepts_epoch_iso_and_clf() -> None:
    assert text_time("971211336") == T0
    assert text_time("971211336.5") == T0 + 0.5
    assert text_time("971211336000") == T0  # milliseconds by magnitude
    assert text_time("2000-10-10T20:55:36Z") == T0
    assert text_time("2000-10-10T13:55:36-07:00") == T0
    assert text_time("2000-10-10 20:55:36") == T0  # naive: UTC
    assert text_time("[10/Oct/2000:13:55:36 -0700]") == T0
    with pytest.raises(ValueError, match="neither epoch"):
        text_time("yesterday")
    with pytest.raises(ValueError, match="empty"):
        text_time("  ")


def test_epoch_units_by_magnitude() -> None:
    assert epoch_seconds(T0) == T0
    assert epoch_seconds(T0 * 1e3) == T0
    assert epoch_seconds(T0 * 1e6) == T0
    assert epoch_seconds(T0 * 1e9) == T0
    with pytest.raises(ValueError, match="finite"):
        epoch_seconds(float("nan"))


def test_time_cache_parses_each_string_once() -> None:
    calls: list[str] = []

    def parse_once(text: str) -> float:
        calls.append(text)
        return float(len(text))

    cache = TimeCache(parse_once)
    assert [cache("a"), cache("a"), cache("bb"), cache("a")] == [1.0, 1.0, 2.0, 1.0]
    assert calls == ["a", "bb"]


# -- keys ----------------------------------------------------------------------------


def test_key_spec_parse() -> None:
    assert KeySpec.parse("ip") == KeySpec("ip")
    assert KeySpec.parse(" USER ") == KeySpec("user")
    assert KeySpec.parse("header:X-Api-Key") == KeySpec("header", "x-api-key")
    assert str(KeySpec.parse("header:X-Api-Key")) == "header:x-api-key"
    for bad in ("host", "header:", "header", "ip:1", ""):
        with pytest.raises(ValueError, match="key"):
            KeySpec.parse(bad)


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("GET /a/b?x=1 HTTP/1.1", "/a/b"),
        ("GET /plain HTTP/1.0", "/plain"),
        ("/only/path?q", "/only/path"),
        ("GET https://h.example/p?q HTTP/1.1", "/p"),
        ("https://h.example", "/"),
        ("-", None),
        ("\\x16\\x03\\x01", None),
        ("GET", None),
    ],
)
def test_request_path(target: str, path: str | None) -> None:
    assert request_path(target) == path


# -- Common / Combined Log Format ----------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("ip", ["203.0.113.7", "198.51.100.1"]),
        ("user", ["frank", "-"]),
        ("path", ["/a/b", "/login"]),
    ],
)
def test_clf_keys(key: str, expected: list[str]) -> None:
    records, bad = parse(ClfParser(KeySpec.parse(key)), [COMBINED, COMMON])
    assert records == [(T0, expected[0]), (T0 + 1, expected[1])]
    assert bad.count == 0


def test_clf_header_keys_need_the_combined_format() -> None:
    records, bad = parse(ClfParser(KeySpec.parse("header:User-Agent")), [COMBINED, COMMON])
    assert records == [(T0, "curl/8.5.0")]
    assert bad.first == [(2, "no user-agent field (needs the combined format)")]
    records, _ = parse(ClfParser(KeySpec.parse("header:referer")), [COMBINED])
    assert records == [(T0, "https://ref.example/")]


def test_clf_other_headers_are_a_setup_error() -> None:
    with pytest.raises(ValueError, match="do not record header 'x-api-key'"):
        ClfParser(KeySpec.parse("header:X-Api-Key"))


def test_clf_bad_lines_are_counted_with_line_numbers() -> None:
    lines = [
        COMBINED,
        "\n",  # blank: skipped silently
        "garbage line\n",
        COMBINED.replace("10/Oct/2000", "99/Oct/2000"),
        COMBINED.replace("Oct", "Foo"),
        COMMON,
        '1.2.3.4 - - [10/Oct/2000:13:55:37 -0700] "\\x16\\x03" 400 0\n',
    ]
    records, bad = parse(ClfParser(KeySpec("path")), lines, keep=3)
    assert records == [(T0, "/a/b"), (T0 + 1, "/login")]
    assert bad.count == 4
    assert [n for n, _ in bad.first] == [3, 4, 5]  # only the first 3 are kept
    assert "not Common/Combined Log Format: 'garbage line'" in bad.first[0][1]
    assert "99/Oct/2000" in bad.first[1][1]


def test_clf_rejects_keys_too_long_for_the_store() -> None:
    line = COMMON.replace("/login", "/" + "x" * 2000)
    records, bad = parse(ClfParser(KeySpec("path")), [line])
    assert records == []
    assert "at most 1024" in bad.first[0][1]


# -- JSON lines ------------------------------------------------------------------------


def test_jsonl_finds_usual_fields() -> None:
    lines = [
        '{"ts": "2000-10-10T20:55:36Z", "client_ip": "1.2.3.4"}\n',
        '{"ts": 971211337, "client_ip": "1.2.3.5"}\n',
        '{"ts": 971211338000, "client_ip": "1.2.3.6"}\n',
    ]
    parser = JsonlParser(KeySpec("ip"), sample=lines)
    records, bad = parse(parser, lines)
    assert records == [(T0, "1.2.3.4"), (T0 + 1, "1.2.3.5"), (T0 + 2, "1.2.3.6")]
    assert bad.count == 0
    assert "'ts'" in parser.describe()
    assert "'client_ip'" in parser.describe()


def test_jsonl_explicit_fields_and_dotted_paths() -> None:
    lines = [
        '{"at": 971211336, "account": {"id": 42}}\n',
        '{"at": 971211337, "account": {"ID": "abc"}}\n',
        '{"at": 971211338, "account": {}}\n',
    ]
    parser = JsonlParser(KeySpec("user"), time_field="at", key_field="account.id", sample=lines)
    records, bad = parse(parser, lines)
    assert records == [(T0, "42"), (T0 + 1, "abc")]
    assert bad.first == [(3, "no 'account.id' field")]


def test_jsonl_header_keys() -> None:
    lines = [
        '{"time": 971211336, "headers": {"X-Api-Key": "k1"}}\n',
        '{"time": 971211337, "headers": {"x-api-key": "k2"}}\n',
        '{"time": 971211338, "headers": {"X-API-KEY": ["k3", "k4"]}}\n',
        '{"time": 971211339, "headers": {}}\n',
    ]
    records, bad = parse(JsonlParser(KeySpec.parse("header:X-Api-Key"), sample=lines), lines)
    assert records == [(T0, "k1"), (T0 + 1, "k2"), (T0 + 2, "k3, k4")]
    assert bad.count == 1
    assert bad.first[0][0] == 4
    # nginx's JSON access logs name headers as variables: $http_x_api_key
    nginx = ['{"time": 971211336, "http_x_api_key": "k9"}\n']
    records, _ = parse(JsonlParser(KeySpec.parse("header:X-Api-Key"), sample=nginx), nginx)
    assert records == [(T0, "k9")]


def test_jsonl_path_keys_from_request_lines() -> None:
    lines = ['{"time": 971211336, "request": "GET /x/y?z=1 HTTP/1.1"}\n']
    records, _ = parse(JsonlParser(KeySpec("path"), sample=lines), lines)
    assert records == [(T0, "/x/y")]


def test_jsonl_bad_lines() -> None:
    lines = [
        '{"time": 971211336, "ip": "a"}\n',
        "{not json\n",
        "[1, 2]\n",
        '{"time": "soon", "ip": "a"}\n',
        '{"time": true, "ip": "a"}\n',
        '{"time": 971211337, "ip": {"nested": 1}}\n',
        '{"time": 971211338}\n',
        "\n",
        '{"time": 971211339, "ip": "b"}\n',
        "[" * 100_000 + "\n",
    ]
    records, bad = parse(JsonlParser(KeySpec("ip"), sample=lines[:1]), lines)
    assert records == [(T0, "a"), (T0 + 3, "b")]
    assert [n for n, _ in bad.first] == [2, 3, 4, 5, 6, 7, 10]
    reasons = dict(bad.first)
    assert reasons[2].startswith("not JSON")
    assert reasons[3] == "a JSON list, not an object"
    assert "not a timestamp" in reasons[5]
    assert "not a key" in reasons[6]
    assert reasons[7] == "no 'ip' field"


def test_jsonl_without_a_time_field_is_a_setup_error() -> None:
    lines = ['{"when_it_was": 1, "ip": "a"}\n']
    with pytest.raises(ValueError, match="pass --time-field"):
        JsonlParser(KeySpec("ip"), sample=lines)
    with pytest.raises(ValueError, match="looked for at"):
        JsonlParser(KeySpec("ip"), time_field="at", sample=lines)


# -- CSV -------------------------------------------------------------------------------


def test_csv_columns_found_case_insensitively() -> None:
    lines = [
        "Timestamp,Client-IP,user\n",
        "2000-10-10T20:55:36Z,1.1.1.1,u1\n",
        "971211337,1.1.1.2,u2\n",
        "\n",
        "not-a-time,1.1.1.1,u1\n",
        "971211338\n",
        '"971211339","1.1.1.3","u3"\n',
        "971211340,,u4\n",
    ]
    parser = CsvParser(KeySpec("ip"), lines)
    records, bad = parse(parser, lines)
    assert records == [(T0, "1.1.1.1"), (T0 + 1, "1.1.1.2"), (T0 + 3, "1.1.1.3")]
    assert [n for n, _ in bad.first] == [5, 6, 8]
    assert bad.first[1][1] == "only 1 column; the header has 3"
    assert parser.time_field == "Timestamp"
    assert parser.key_field == "Client-IP"


def test_csv_explicit_fields_and_other_delimiters() -> None:
    lines = ["when;who;x-api-key\n", "971211336;u1;k1\n", "971211337;u2;k2\n"]
    parser = CsvParser(KeySpec("user"), lines, time_field="WHEN", key_field="who")
    assert parse(parser, lines)[0] == [(T0, "u1"), (T0 + 1, "u2")]
    headers = CsvParser(KeySpec.parse("header:X-Api-Key"), lines, time_field="when")
    assert parse(headers, lines)[0] == [(T0, "k1"), (T0 + 1, "k2")]
    tabs = ["time\tip\n", "971211336\t9.9.9.9\n"]
    assert parse(CsvParser(KeySpec("ip"), tabs), tabs)[0] == [(T0, "9.9.9.9")]


def test_csv_missing_columns_are_setup_errors() -> None:
    lines = ["moment,ip\n", "1,a\n"]
    with pytest.raises(ValueError, match=r"no time column .*columns are moment, ip.*--time-field"):
        CsvParser(KeySpec("ip"), lines)
    with pytest.raises(ValueError, match=r"no key \(user\) column.*--key-field"):
        CsvParser(KeySpec("user"), lines, time_field="moment")
    with pytest.raises(ValueError, match="no header row"):
        CsvParser(KeySpec("ip"), ["\n"])


def test_csv_unreadable_rows_do_not_stop_the_run() -> None:
    lines = ["time,ip\n", "971211336,a\n", "971211337,b\x00c\n", "971211338,d\n"]
    records, bad = parse(CsvParser(KeySpec("ip"), lines), lines)
    assert records[0] == (T0, "a")
    assert records[-1] == (T0 + 2, "d")
    assert bad.count + len(records) == 3


# -- detection and sources --------------------------------------------------------------


def test_detect_format() -> None:
    assert detect_format([COMBINED, COMMON]) == "clf"
    assert detect_format(["junk\n", COMMON]) == "clf"
    assert detect_format(['{"time": 1, "ip": "a"}\n'] * 3) == "jsonl"
    assert detect_format(["time,ip\n", "1,a\n"]) == "csv"
    assert detect_format(["time ip\n"], "x.csv") == "csv"
    assert detect_format(["\n"]) == "clf"  # empty: nothing to replay anyway
    with pytest.raises(ValueError, match="pass --format"):
        detect_format(["hello world\n"], "x.log")


def test_source_reads_gzip_and_survives_bad_bytes(tmp_path: Path) -> None:
    plain = tmp_path / "access.log"
    plain.write_bytes(COMBINED.encode() + b"\xff\xfe broken bytes\n" + COMMON.encode())
    packed = tmp_path / "access.log.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, packed):
        with Source(str(path)) as source:
            lines = list(source.lines())
            assert source.position() == source.size
        assert len(lines) == 3
        assert "\ufffd" in lines[1]
        records, bad = parse(ClfParser(KeySpec("ip")), lines)
        assert [k for _, k in records] == ["203.0.113.7", "198.51.100.1"]
        assert bad.first[0][0] == 2


def test_bad_lines_validates_keep() -> None:
    with pytest.raises(ValueError, match="keep"):
        BadLines(-1)
