"""The installed project (what `scripts/run.sh` starts through the `myelin`
console script) holds every component: the tests themselves import from the
repository root, so a package missing from pyproject.toml's list would only
show when the homeserver starts outside it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: Top-level folders that are not part of the installed homeserver.
NOT_INSTALLED = {"tests", "bench", "migrations", "scripts", "protos", "gen"}


def _top_level_packages() -> list[str]:
    return sorted(p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name not in NOT_INSTALLED)


def test_every_top_level_package_imports_from_the_installed_project(tmp_path: Path) -> None:
    packages = _top_level_packages()
    assert {"roomserver", "clientapi", "syncapi", "federationapi", "mediaapi", "homeserver"} <= set(packages)
    modules = [*packages, *(f"{p}.component" for p in packages if (REPO / p / "component.py").exists()),
               "homeserver.cli", "homeserver.monolith", "homeserver.personalities"]
    # -I: neither the working directory nor PYTHONPATH is on the path, as for
    # the console script; only what the virtualenv installed.
    result = subprocess.run(
        [sys.executable, "-I", "-c", "import importlib, sys\n"
         "for name in sys.argv[1:]:\n    importlib.import_module(name)\n", *modules],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
