"""The committed gen/ tree must be what scripts/gen_protos.py makes from protos/."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _differences(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    found = [f"only in committed gen/: {n}" for n in cmp.left_only]
    found += [f"missing from gen/: {n}" for n in cmp.right_only]
    found += [f"stale: {n}" for n in cmp.diff_files]
    for sub in cmp.common_dirs:
        found += _differences(a / sub, b / sub)
    return found


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(out)],
                   check=True, capture_output=True)
    assert _differences(ROOT / "gen", out) == [], "run scripts/gen_protos.py and commit gen/"
