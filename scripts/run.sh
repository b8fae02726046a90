#!/usr/bin/env bash
# Installs Myelin into .venv and starts the homeserver with embedded
# defaults (SQLite, the embedded log) on http://localhost:8008. The first
# start writes data/myelin.yaml and a signing key; later starts reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."
MYELIN_EXTRAS=${MYELIN_EXTRAS:-dev} bash scripts/bootstrap.sh
exec .venv/bin/myelin --config "${MYELIN_CONFIG:-data/myelin.yaml}" "$@"
