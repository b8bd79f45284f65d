"""``resilience demo`` usage errors: one argparse line and status 2, before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from resilience.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--duration", "2"], "must be between 5 and 600 seconds"),
        (["--duration", "nan"], "must be between 5 and 600 seconds"),
        (["--duration", "soon"], "is not a number of seconds"),
        (["--seed", "-1"], "must not be negative"),
        (["--live", "--plain"], "not allowed with argument"),
    ],
)
def test_bad_options_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", *argv]) == 2
    assert message in capsys.readouterr().err


def test_plot_into_a_missing_directory_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--plot", str(tmp_path / "nowhere" / "t.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_without_the_demo_extra_the_command_says_what_to_install() -> None:
    blocked = "import sys; sys.modules['uvicorn'] = None; from resilience.cli import main; "
    done = subprocess.run(
        [sys.executable, "-c", blocked + "sys.exit(main(['demo']))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "pip install 'resilience-patterns[demo]'" in done.stderr
    assert "uvicorn" in done.stderr and "Traceback" not in done.stderr
