"""``resilience demo`` end to end, headless, as a subprocess: the verdict holds, nothing leaks.

The demo starts two aiohttp origins, a uvicorn API and its clients on
127.0.0.1; the test reads the ports it printed, and after the process exits
checks that every one of them can be bound again (nothing still listens)
and that no process of the demo's session is left.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PORTS = re.compile(r"http://127\.0\.0\.1:(\d+)")
ANSI = re.compile(r"\x1b\[")


def _start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TERM": "dumb", "COLUMNS": "110"}
    env.pop("FORCE_COLOR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "resilience.cli", "demo", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the test can tell what it left
    )


def _assert_released(process: subprocess.Popen[str], output: str) -> None:
    ports = [int(p) for p in PORTS.findall(output.splitlines()[0])]
    assert len(ports) == 3, output[:500]
    for port in ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))  # raises if anything still listens there
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # no process of the demo's group is alive


@pytest.mark.slow
def test_demo_headless_verdict_holds_and_everything_is_released(tmp_path: Path) -> None:
    plot = tmp_path / "timeline.png"
    process = _start("--duration", "10", "--seed", "1", "--plot", str(plot))
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, output
    assert not ANSI.search(output), "headless output must be plain text"
    assert "verdict: PASS" in output
    executed = re.search(r"charges executed (\d+) == distinct idempotency keys (\d+)", output)
    assert executed is not None, output
    assert executed.group(1) == executed.group(2) and int(executed.group(1)) > 20
    assert "0 responses 5xx other than 503" in output
    assert re.search(r"t=\s*\d+\.\ds phase=outage .* active=secondary", output), output
    assert re.search(r"breaker payments\.primary: closed -> open", output), output
    # per-plan limits: each client's answers named its plan's policy
    assert re.search(r"free-mallory .*\"free\";q=\d+;w=\d+", output), output
    assert re.search(r"paid-cy .*\"paid\";q=\d+;w=\d+", output), output
    served = re.search(r"(\d+) requests answered 2xx between", output)
    assert served is not None and int(served.group(1)) > 0
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _assert_released(process, output)


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_stops_everything_it_started(signum: int, status: int) -> None:
    process = _start("--duration", "30", "--seed", "3")
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        for line in process.stdout:  # wait until traffic flows through every server
            lines.append(line)
            if line.startswith("t=") and "phase=calm" in line and "2xx=0/s" not in line:
                break
            assert time.monotonic() < deadline, "".join(lines)
        os.killpg(process.pid, signum)
        rest, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = "".join(lines) + rest
    assert process.returncode == status, output
    assert "everything it started is stopped" in output and "Traceback" not in output
    _assert_released(process, output)
