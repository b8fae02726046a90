"""Generate the Python code of the contract in protos/ into gen/.

The proto directory path, the proto `package` and the Python import path are
the same (protos/myelin/roomserver/v1 -> myelin.roomserver.v1), so the
generated imports need no rewriting. Messages get .pyi stubs from protoc;
gRPC stubs and servicers get theirs from mypy-protobuf. The output is
committed; tests/contract/test_generated_code.py fails when it is stale.

Usage: python scripts/gen_protos.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def generate(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    # protoc finds the mypy-protobuf plugins on PATH; they sit beside this
    # interpreter in the virtualenv.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{include}",
            f"--python_out={out}",
            f"--mypy_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_grpc_out={out}",
            *sources,
        ]
    )
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")
    # Every directory becomes a regular package so mypy and setuptools find it.
    for directory in [out, *(p for p in out.rglob("*") if p.is_dir())]:
        if directory != out:
            (directory / "__init__.py").touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "gen")
    args = parser.parse_args()
    generate(args.out)
    print(f"generated {sum(1 for _ in args.out.rglob('*.py*'))} files in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
