#!/usr/bin/env bash
# Install what the project needs on a fresh machine: a Python venv with the pinned
# requirements and Azurite from the npm lock file. Quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
stamp() { cat requirements.txt requirements-dev.txt pyproject.toml package-lock.json 2>/dev/null | sha256sum | cut -c1-16; }

# quietly WHAT COMMAND...: run COMMAND with its output in a log, showing it is alive meanwhile (a spinner
# with the elapsed time and the log's last line on a terminal; a line every 10 s otherwise, as in CI).
# The log is shown only if COMMAND fails.
quietly() {
  local what=$1 log pid start=$SECONDS frames='|/-\' tick=0 said=0 status=0 elapsed latest
  shift
  log=$(mktemp)
  "$@" >"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 0.5
    elapsed=$((SECONDS - start))
    latest=$(tail -n 1 "$log" 2>/dev/null | tr -d '\r' | cut -c1-60)
    if [ -t 1 ]; then
      printf '\r    %s %s %3ds  %-60s' "${frames:$((tick++ % 4)):1}" "$what" "$elapsed" "$latest"
    elif [ $((elapsed - said)) -ge 10 ]; then
      echo "    ... still $what (${elapsed} s): $latest"
      said=$elapsed
    fi
  done
  wait "$pid" || status=$?
  if [ -t 1 ]; then printf '\r%*s\r' 100 ''; fi
  if [ "$status" -ne 0 ]; then
    cat "$log"
    rm -f "$log"
    exit "$status"
  fi
  rm -f "$log"
  echo "    done in $((SECONDS - start)) s"
}

install_python() {
  .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --disable-pip-version-check -r requirements-dev.txt
  .venv/bin/python -m pip install --disable-pip-version-check --no-deps -e .
}

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
if [ "$(cat .venv/.certstate-stamp 2>/dev/null)" != "$(stamp)" ]; then
  echo "==> installing Python requirements (a minute or two the first time)"
  quietly "installing" install_python
  stamp > .venv/.certstate-stamp
fi
if [ ! -x node_modules/.bin/azurite-queue ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "==> installing Azurite (npm ci)"
  quietly "installing" npm ci --no-audit --no-fund --loglevel=error
fi
