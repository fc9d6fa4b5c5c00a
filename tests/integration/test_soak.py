"""The soak script's 60-second variant: mixed traffic while operators load, unload and publish."""
import subprocess
import sys

from service.testing import ROOT


def test_a_minute_of_mixed_traffic_with_publishes_and_admin_calls_has_no_error():
    result = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--duration", "60", "--warm-up", "20"],
                            cwd=ROOT, capture_output=True, text=True, timeout=240)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "errors: 0" in result.stdout and "| publish | 2 | 0 |" in result.stdout
