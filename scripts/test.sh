#!/usr/bin/env bash
# Set up and run every test: unit, integration (real gunicorn, Prometheus, Chromium), deploy checks.
# Extra arguments go to pytest, e.g. scripts/test.sh -k lifecycle
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
export TF_CPP_MIN_LOG_LEVEL=2
# Tools installed by pip into the venv (docker-compose, hadolint) must be on PATH for the tests.
export PATH="$(pwd)/${VENV:-.venv}/bin:$PATH"
exec "${VENV:-.venv}/bin/python" -m pytest "$@"
