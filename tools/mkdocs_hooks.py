"""mkdocs hook: give mkdocstrings one ``resilience`` package to read.

The import package is split in two folders (``resilience/``, the core, and
``adapters/resilience/``, the adapters; see DESIGN.md section 4), joined at
import time by ``pkgutil.extend_path``.  griffe, which reads the source for
mkdocstrings, stops at the first folder holding ``resilience/__init__.py``
and never sees the adapters.  So before the build this hook lays out
``build/apisrc/resilience/`` with symlinks to both folders' files, and
mkdocs.yml points the python handler there.  No copy, no network.
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MERGED = ROOT / "build" / "apisrc" / "resilience"


def on_startup(command: str, dirty: bool) -> None:
    """Before any plugin's ``on_config``: mkdocstrings drops search paths that do not exist."""
    lay_out()


def lay_out() -> None:
    shutil.rmtree(MERGED, ignore_errors=True)
    MERGED.mkdir(parents=True)
    for folder in (ROOT / "resilience", ROOT / "adapters" / "resilience"):
        _link_tree(folder, MERGED)


def _link_tree(source: Path, target: Path) -> None:
    """Real folders, symlinked files (griffe does not walk into symlinked folders)."""
    for entry in sorted(source.iterdir()):
        if entry.name == "__pycache__":
            continue
        destination = target / entry.name
        if entry.is_dir():
            destination.mkdir(exist_ok=True)
            _link_tree(entry, destination)
        elif destination.exists():
            raise RuntimeError(f"{entry} clashes with {destination.resolve()}")
        else:
            destination.symlink_to(entry)
