"""`--help` of the training commands answers without loading a model runtime (issue 23): no
onnx, onnxruntime, TensorFlow or SQLAlchemy import, in a fresh interpreter."""
import subprocess
import sys

import pytest

from tests.harness import ROOT

HEAVY = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "sqlalchemy", "matplotlib")
PROBE = """
import atexit, sys
heavy = {heavy!r}
atexit.register(lambda: print("LOADED", sorted(m for m in heavy if m in sys.modules)))
import runpy
sys.argv = [{module!r}, *sys.argv[1:]]
runpy.run_module({module!r}, run_name="__main__")
"""


@pytest.mark.parametrize("module, args", [
    ("training", ["--help"]), ("training", ["retrain", "--help"]), ("training", ["train", "--help"]),
    ("training", ["export", "--help"]), ("training", ["quantize", "--help"]), ("training.cpu_check", ["--help"]),
], ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_help_loads_no_model_runtime(module, args):
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY, module=module), *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr[-2000:]
    assert result.stdout.rstrip().endswith("LOADED []"), result.stdout[-300:]
