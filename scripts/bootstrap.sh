#!/usr/bin/env bash
# Install what the project needs on a fresh machine: a Python venv with the pinned
# requirements and Azurite from the npm lock file. Quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
stamp() { cat requirements.txt requirements-dev.txt pyproject.toml package-lock.json 2>/dev/null | sha256sum | cut -c1-16; }

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
if [ "$(cat .venv/.certstate-stamp 2>/dev/null)" != "$(stamp)" ]; then
  echo "==> installing Python requirements"
  log=$(mktemp)
  if ! { .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip \
         && .venv/bin/python -m pip install --disable-pip-version-check -r requirements-dev.txt \
         && .venv/bin/python -m pip install --disable-pip-version-check --no-deps -e .; } >"$log" 2>&1; then
    cat "$log"; rm -f "$log"; exit 1
  fi
  rm -f "$log"
  stamp > .venv/.certstate-stamp
fi
if [ ! -x node_modules/.bin/azurite-queue ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "==> installing Azurite (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
