#!/usr/bin/env bash
# Installs what Myelin needs on a fresh Debian machine with Python 3.11:
# a virtualenv in .venv with the project and its dev tools. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.myelin-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -e ".[${MYELIN_EXTRAS:-dev}]"
  touch "$stamp"
fi
