#!/usr/bin/env bash
# Set up and serve the bundled model on :8000 (configure with the variables in the README).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh serve
exec "${VENV:-.venv}/bin/python" -m service
