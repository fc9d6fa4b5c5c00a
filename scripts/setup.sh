#!/usr/bin/env bash
# Install what this project needs on a fresh Debian machine, idempotently.
#   scripts/setup.sh serve   the service's Python packages only (no TensorFlow)
#   scripts/setup.sh test    everything: apt packages for the tests, all Python packages
# Python packages go to .venv (override with VENV=...).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-test}
venv=${VENV:-.venv}

if [ "$what" = test ]; then
  # dataset-fashion-mnist: the training data; prometheus: promtool and a real server for tests;
  # hey and wrk: load generators; chromium: browser tests; nginx-light: `nginx -t` on the proxy config;
  # postgresql: a throwaway server (initdb, pg_ctl) for the capture store's tests (tests/postgres.py).
  packages=(dataset-fashion-mnist prometheus hey wrk chromium nginx-light postgresql)
  missing=()
  for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
if [ "$what" = serve ]; then
  "$venv/bin/python" -m pip install -q -r service/requirements.txt
else
  "$venv/bin/python" -m pip install -q -r requirements.txt
  # The oldest gunicorn the worker supports, beside the pinned one: the front-door tests run on both.
  [ -d "$venv/gunicorn-oldest/gunicorn" ] || \
    "$venv/bin/python" -m pip install -q --no-deps --target "$venv/gunicorn-oldest" gunicorn==23.0.0
fi
