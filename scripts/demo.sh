#!/usr/bin/env bash
# The run command: install what is needed, then run the whole pipeline locally (devstack/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m devstack.demo "$@"
