"""The soak script's 60-second variant: mixed traffic while operators load, unload and publish, with capture
on into a real PostgreSQL that is stopped for 10 s mid-run, and true labels through /v1/feedback."""
import subprocess
import sys

import pytest

from tests.harness import ROOT

pytestmark = pytest.mark.slow  # a soak


def test_a_minute_of_mixed_traffic_with_publishes_admin_calls_and_a_store_outage_has_no_error():
    result = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--duration", "60", "--warm-up", "20",
                             "--store", "postgresql", "--stop-store-at", "25", "--outage", "10", "--max-rows", "2000"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    print(result.stdout)
    # rc 0 also means: the store stayed within CAPTURE_MAX_ROWS (+ one prune period), the outage's
    # captures were dropped and counted, and the drift rules' conditions stayed silent.
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "errors: 0" in result.stdout and "| publish | 2 | 0 |" in result.stdout
    assert "| feedback |" in result.stdout and ": silent" in result.stdout and "store_error drops" in result.stdout
