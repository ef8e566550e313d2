#!/usr/bin/env bash
# Every check the project has, from a fresh machine: install, lint, type-check, all tests
# (unit, devstack, end-to-end through Azurite), infra checks. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy (strict)"
.venv/bin/mypy
echo "==> checkov (infra)"
bash scripts/checkov.sh
echo "==> pytest"
# Two workers, whole files each (a file's tests share its fixtures and services); PYTEST_WORKERS=0 runs in one process.
.venv/bin/pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
