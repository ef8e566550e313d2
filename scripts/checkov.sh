#!/usr/bin/env bash
# Static security checks of the Bicep templates under infra/ with checkov.
#
# checkov pins old versions of many libraries, so it lives in its own virtualenv (.checkov-venv,
# git-ignored), never in .venv. The first run creates it; later runs reuse it.
#
# Passes only if checkov reports no failed check AND could parse every scanned file (checkov skips
# a file it cannot parse without failing). Skipped checks are justified next to their resource as
# `//checkov:skip=CKV_...: reason`; the one path checkov cannot parse is excluded, with its reason,
# in .checkov.yaml.
set -euo pipefail

cd "$(dirname "$0")/.."

CHECKOV_VERSION="3.3.30"
VENV=".checkov-venv"
PYTHON="${PYTHON:-python3}"

if [[ ! -x "$VENV/bin/checkov" ]] || [[ "$("$VENV/bin/checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]]; then
  echo "Creating $VENV with checkov==$CHECKOV_VERSION ..." >&2
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi

results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT

# .checkov.yaml in the repository root is picked up automatically.
"$VENV/bin/checkov" -d infra --framework bicep --skip-download --quiet --compact \
  --output cli --output json --output-file-path "console,$results/checkov.json"

"$VENV/bin/python" - "$results/checkov.json" <<'PY'
import json
import sys

with open(sys.argv[1], encoding="utf-8") as handle:
    data = json.load(handle)
reports = data if isinstance(data, list) else [data]
failed = sum(report["summary"]["failed"] for report in reports)
parsing_errors = sum(report["summary"]["parsing_errors"] for report in reports)
if failed or parsing_errors:
    print(f"checkov: {failed} failed check(s), {parsing_errors} file(s) not parsed", file=sys.stderr)
    sys.exit(1)
PY
