"""A fresh interpreter for the tests of what the `myelin` command does at start
(homeserver/memory.py): settings applied once per process need a process of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def run_python(code: str, env_extra: dict[str, str] | None = None) -> str:
    """Runs ``code`` in a new interpreter at the repository root, without the caller's
    glibc ``MALLOC_*`` settings (plus ``env_extra``); returns its last line of output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "gen")])
    env.update(env_extra or {})
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stdout.strip().splitlines()[-1]
