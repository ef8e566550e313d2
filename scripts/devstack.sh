#!/usr/bin/env bash
# The local stack in the background: scripts/devstack.sh up | status | down (devstack/control.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m devstack "$@"
