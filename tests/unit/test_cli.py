"""The training CLI outside training: --help, evaluate and quantize never import TensorFlow,
and invalid options are refused by the parser."""
import json
import subprocess
import sys

import onnx
import pytest

import modelrepo
from tests.harness import ROOT
from tests.tiny_model import publish_tiny, tiny_onnx

# Runs the real CLI in a fresh interpreter and, whatever way it exits, reports which heavy
# modules it loaded.
PROBE = """
import atexit, json, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted(m for m in ("tensorflow", "keras", "tf2onnx") if m in sys.modules))))
from training.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _cli(*args):
    result = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    loaded = json.loads(result.stdout.rsplit("MODULES ", 1)[1])
    return result, loaded


@pytest.mark.parametrize("args", [["--help"], ["retrain", "--help"], ["train", "--help"]], ids=" ".join)
def test_help_does_not_import_tensorflow(args):
    result, loaded = _cli(*args)
    assert result.returncode == 0 and "usage:" in result.stdout
    assert loaded == []


def test_evaluate_does_not_import_tensorflow(tmp_path):
    onnx.save(tiny_onnx(), tmp_path / "model.onnx")
    result, loaded = _cli("evaluate", str(tmp_path / "model.onnx"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy 0.0860 on 10000 images" in result.stdout and loaded == []


def test_quantize_does_not_import_tensorflow(tmp_path):
    publish_tiny(tmp_path / "models")
    result, loaded = _cli("quantize", "--repository", str(tmp_path / "models"), "--calibration-images", "200")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "published fashion-mnist-int8/1" in result.stdout and loaded == []
    meta = modelrepo.verify(tmp_path / "models", "fashion-mnist-int8", 1)
    assert "tensorflow" not in meta.tool_versions and {"onnx", "onnxruntime"} <= set(meta.tool_versions)
    card = (modelrepo.version_dir(tmp_path / "models", "fashion-mnist-int8", 1) / "report" / "README.md").read_text()
    assert "## Reproduce" in card and "python -m training quantize" in card and "training_curves.png" not in card


@pytest.mark.parametrize("args, message", [
    (["retrain", "--keep", "0"], "--keep: must be at least 1"),
    (["retrain", "--significance", "1.5"], "--significance: must be in [0, 1)"),
    (["retrain", "--pin", "0"], "--pin: must be at least 1"),
    (["train", "--init-from", "served"], "is for `retrain`"),
])
def test_invalid_options_are_refused_by_the_parser(args, message):
    result, loaded = _cli(*args)
    assert result.returncode == 2 and message in result.stderr and loaded == []
