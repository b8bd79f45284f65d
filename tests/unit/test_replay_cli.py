"""``resilience replay`` from the command line: output, exit codes, error messages, plot."""

from __future__ import annotations

import builtins
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from resilience.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "boundary-burst.log"
DEMO = [
    "replay",
    str(SAMPLE),
    "--policy", "fixed-window:100/minute",
    "--policy", "sliding-log:100/minute",
    "--policy", "sliding-counter:100/minute",
    "--policy", "gcra:100/minute,burst=10",
    "--policy", "leaky-shape:100/minute,capacity=20",
    "--key", "ip",
]  # fmt: skip
EXECUTABLE = Path(sys.executable).with_name("resilience")


@pytest.fixture(autouse=True)
def plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich output as on an 80-column pipe, whatever the environment running the tests."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("FORCE_COLOR", raising=False)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main([*args, "--json"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def test_demo_prints_tables_and_an_explanation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(DEMO) == 0
    out = capsys.readouterr().out
    assert "Replayed 1,634 requests" in out
    assert "Policies side by side" in out
    assert "Most rejected keys" in out
    assert "Queueing delay added by shaping" in out
    text = " ".join(out.split())
    assert "fixed-window:100/minute let 203.0.113.7 through 200 times within one 60s window" in text
    assert "held the line" in text
    assert "Traceback" not in out


def test_json_output_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, *DEMO)
    assert data["requests"] == 1634
    assert data["bad_lines"] == {"count": 0, "first": []}
    by_policy = {p["policy"]: p for p in data["policies"]}
    fixed = by_policy["fixed-window:100/minute"]
    assert fixed["peak"]["admitted"] == 200
    assert fixed["peak"]["key"] == "203.0.113.7"
    assert fixed["peak"]["window_start"] == "2024-03-14T12:01:55Z"
    assert by_policy["sliding-log:100/minute"]["peak"]["admitted"] <= 100
    assert by_policy["gcra:100/minute,burst=10"]["peak"]["admitted"] <= 100
    assert by_policy["sliding-log:100/minute"]["top_rejected"] == [
        {"key": "203.0.113.7", "rejected": 100}
    ]
    shape = by_policy["leaky-shape:100/minute,capacity=20"]
    assert shape["delay"]["delayed"] > 0
    assert shape["delay"]["max"] >= shape["delay"]["p99"] >= shape["delay"]["p95"]
    assert fixed["delay"] is None


def test_other_clf_keys(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "replay", str(SAMPLE), "-p", "gcra:1/minute", "--key", "user")
    keys = {row["key"] for row in data["policies"][0]["top_rejected"]}
    assert keys <= {"-", "alice", "bob", "carol", "dave"}
    data = run_json(capsys, "replay", str(SAMPLE), "-p", "gcra:1/s", "--key", "header:User-Agent")
    assert data["policies"][0]["top_rejected"][0]["key"] == "python-requests/2.31.0"
    data = run_json(
        capsys, "replay", str(SAMPLE), "-p", "gcra:1/minute", "-k", "path", "--top", "3"
    )
    assert all(row["key"].startswith("/") for row in data["policies"][0]["top_rejected"])
    assert len(data["policies"][0]["top_rejected"]) == 3


def test_jsonl_with_fields_and_header_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "requests.jsonl"
    rows = [{"at": 1_700_000_000 + i // 10, "hdrs": {"X-Api-Key": f"k{i % 2}"}} for i in range(100)]
    rows.append({"at": "broken"})
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = run_json(
        capsys, "replay", str(log), "-p", "sliding-log:3/s",
        "--time-field", "at", "--key-field", "hdrs.x-api-key",
    )  # fmt: skip
    assert data["requests"] == 100
    assert data["bad_lines"]["count"] == 1
    assert data["bad_lines"]["first"][0]["line"] == 101
    p = data["policies"][0]
    assert p["admitted"] == 10 * 2 * 3  # 10 seconds, 2 keys, 3 per second
    assert {row["key"] for row in p["top_rejected"]} == {"k0", "k1"}
    headers = tmp_path / "headers.jsonl"
    headers.write_text(
        "".join(
            json.dumps({"time": 1_700_000_000, "headers": {"X-Api-Key": "z"}}) + "\n"
            for _ in range(5)
        )
    )
    data = run_json(
        capsys, "replay", str(headers), "-p", "fixed-window:2/s", "-k", "header:x-api-key"
    )
    assert data["policies"][0]["top_rejected"] == [{"key": "z", "rejected": 3}]


def test_csv_with_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "requests.csv"
    lines = ["when,account,x-api-key"]
    lines += [f"2023-11-14T22:13:{i % 60:02d}Z,acct{i % 3},key{i % 2}" for i in range(60)]
    lines.append("oops,acct0,key0")
    log.write_text("\n".join(lines) + "\n")
    data = run_json(
        capsys, "replay", str(log), "-p", "gcra:1/minute", "-k", "user", "--key-field", "account"
    )
    assert data["requests"] == 60
    assert data["bad_lines"]["first"][0]["line"] == 62
    assert data["policies"][0]["admitted"] == 3
    data = run_json(
        capsys, "replay", str(log), "-p", "gcra:1/minute", "-k", "header:X-Api-Key", "-f", "csv"
    )
    assert data["policies"][0]["admitted"] == 2


def test_bad_lines_are_listed_with_line_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = SAMPLE.read_text().splitlines()[:50]
    lines[9] = "this is not a log line"
    lines[19] = lines[19].replace("Mar", "Xyz")
    log = tmp_path / "some-bad.log"
    log.write_text("\n".join(lines) + "\n")
    assert main(["replay", str(log), "-p", "gcra:10/s", "--bad-lines", "1"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "2 bad lines skipped (first 1): line 10: not Common/Combined Log Format" in out
    assert "line 20" not in out


def test_plot_file_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "replay.png"
    assert main([*DEMO, "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot written to {out}" in capsys.readouterr().err


def test_plot_without_matplotlib_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main([*DEMO, "--plot", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "resilience-patterns[plot]" in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "missing.log", "-p", "gcra:1/s"], "missing.log: no such file"),
        (["replay", str(SAMPLE), "-p", "bogus:1/s"], "unknown algorithm 'bogus'"),
        (["replay", str(SAMPLE), "-p", "gcra:1/s,burst=0"], "burst must be a positive integer"),
        (["replay", str(SAMPLE), "-p", "gcra"], "must look like"),
        (["replay", str(SAMPLE)], "required: --policy"),
        (["replay", str(SAMPLE), "-p", "gcra:1/s", "-k", "host"], "must be ip, user, path"),
        (["replay", str(SAMPLE), "-p", "gcra:1/s", "-k", "header:X-Api-Key"], "header 'x-api-key'"),
        (["replay", str(SAMPLE), "-p", "gcra:1/s", "--time-field", "t"], "apply to jsonl and csv"),
        (["replay", str(SAMPLE), "-p", "gcra:1/s", "-f", "xml"], "invalid choice"),
        (["replay", str(SAMPLE), "-p", "gcra:1/s", "--top", "-1"], "must not be negative"),
        (
            ["replay", str(SAMPLE), "-p", "gcra:1/s", "--plot", "/nonexistent/x.png"],
            "does not exist",
        ),
        (["replay", str(ROOT), "-p", "gcra:1/s"], "is a directory"),
        ([], "required: COMMAND"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    captured = capsys.readouterr()
    assert message in " ".join(captured.err.split())
    assert "Traceback" not in captured.err + captured.out


def test_csv_without_the_named_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "x.csv"
    log.write_text("moment,ip\n1,a\n")
    assert main(["replay", str(log), "-p", "gcra:1/s"]) == 2
    assert "pass --time-field" in capsys.readouterr().err


def test_nothing_usable_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("")
    assert main(["replay", str(empty), "-p", "gcra:1/s"]) == 1
    junk = tmp_path / "junk.log"
    junk.write_text('127.0.0.1 - - [nope] "GET / HTTP/1.1" 200 1\n' * 3)
    assert main(["replay", str(junk), "-p", "gcra:1/s"]) == 1
    captured = capsys.readouterr()
    assert "no usable request" in captured.err
    assert "3 bad lines skipped" in " ".join(captured.out.split())


def test_stdin_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(SAMPLE.read_bytes()))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert run_json(capsys, "replay", "-", "-p", "gcra:1/s")["requests"] == 1634
    assert not stdin.buffer.closed  # standard input belongs to the caller


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--help"]) == 0
    assert "--policy SPEC" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert "resilience" in capsys.readouterr().out


# -- the installed console script ---------------------------------------------------------


def _script(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    if not EXECUTABLE.exists():
        pytest.skip("the resilience console script is not installed next to this python")
    return subprocess.run(
        [str(EXECUTABLE), *args], input=stdin, capture_output=True, timeout=60, check=False
    )


def test_console_script_runs_the_demo() -> None:
    done = _script(*DEMO)
    assert done.returncode == 0, done.stderr.decode()
    assert b"Policies side by side" in done.stdout
    assert done.stderr == b""  # no progress bar when not on a terminal


def test_console_script_usage_errors() -> None:
    done = _script("replay", "does-not-exist.log", "--policy", "gcra:1/s")
    assert done.returncode == 2
    assert b"does-not-exist.log: no such file" in done.stderr
    assert b"Traceback" not in done.stderr
    done = _script("replay", str(SAMPLE), "--policy", "nope:1/s")
    assert done.returncode == 2
    assert b"unknown algorithm" in done.stderr
    assert b"Traceback" not in done.stderr


def test_console_script_reads_stdin() -> None:
    done = _script(
        "replay", "-", "-p", "sliding-log:100/minute", "--json", stdin=SAMPLE.read_bytes()
    )
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["requests"] == 1634


def test_docs_examples_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python blocks of docs/replay.md run as written (from the repository root)."""
    import re

    monkeypatch.chdir(ROOT)
    text = (ROOT / "docs" / "replay.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert blocks
    namespace: dict[str, object] = {"__name__": "docs_replay"}
    for block in blocks:
        exec(compile(block, "docs/replay.md:example", "exec"), namespace)


def test_docs_show_the_current_demo_output(capsys: pytest.CaptureFixture[str]) -> None:
    """The pasted example output in docs/replay.md is what the demo prints today."""
    assert main(DEMO) == 0
    out = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    docs = (ROOT / "docs" / "replay.md").read_text()
    for line in out[2:]:  # the first two lines name the file path as given
        assert line in docs, line
