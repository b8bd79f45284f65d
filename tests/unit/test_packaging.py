"""Layout: the core imports no adapter dependency; wheel and editable installs work."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import resilience

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "aiohttp",
    "starlette",
    "redis",
    "prometheus_client",
    "boto3",
    "botocore",
    "moto",
    "fastapi",
    "uvicorn",
    "httpx",
    "litestar",
    "opentelemetry",
}


def test_core_source_imports_no_adapter_dependency() -> None:
    offenders = []
    for path in (ROOT / "resilience").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN:
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_importing_the_core_loads_only_its_own_dependencies() -> None:
    code = (
        "import sys, resilience, resilience.testing;"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r});"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_editable_install_serves_adapters_from_their_folder() -> None:
    import resilience.prometheus as adapter

    assert Path(resilience.__file__).parent == ROOT / "resilience"
    assert Path(adapter.__file__).parent == ROOT / "adapters" / "resilience"
    assert (ROOT / "resilience" / "py.typed").exists()


@pytest.mark.slow
def test_wheel_contains_core_and_adapters_and_imports_from_itself(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("resilience_patterns-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "resilience/__init__.py" in names
    assert "resilience/py.typed" in names
    assert "resilience/prometheus.py" in names
    assert not any(n.startswith("adapters/") for n in names)
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    code = (
        "import sys\n"
        f"root = {str(ROOT)!r}\n"
        "editable = {root, root + '/adapters'}\n"
        f"sys.path = [{str(unpacked)!r}] + [p for p in sys.path if p and p not in editable]\n"
        "import resilience, resilience.prometheus, resilience.testing\n"
        "print(resilience.__file__); print(resilience.prometheus.__file__)\n"
        "assert resilience.RateLimiter(resilience.GCRA(1)).try_acquire().allowed\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    first, second = out.stdout.split()
    assert first.startswith(str(unpacked)) and second.startswith(str(unpacked))


def test_public_names_are_exported() -> None:
    for name in resilience.__all__:
        assert hasattr(resilience, name), name
