#!/usr/bin/env bash
# Set up and run every test: unit, integration (real gunicorn, Prometheus, Chromium), deploy checks.
#   scripts/test.sh            the full suite (CI runs this): about 20 minutes on 2 cores
#   scripts/test.sh --quick    the fast tier, every test not marked slow: under 3 minutes
# Other arguments go to pytest, e.g. scripts/test.sh -k lifecycle
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
for arg in "$@"; do
  if [ "$arg" = --quick ]; then args+=(-m "not slow"); else args+=("$arg"); fi
done
scripts/setup.sh test
export TF_CPP_MIN_LOG_LEVEL=2
# Tools installed by pip into the venv (docker-compose, hadolint) must be on PATH for the tests.
export PATH="$(pwd)/${VENV:-.venv}/bin:$PATH"
exec "${VENV:-.venv}/bin/python" -m pytest ${args[@]+"${args[@]}"}
