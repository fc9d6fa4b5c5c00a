"""The committed default model: intact, the production contract, and ≥ 92% on the real test set."""
import numpy as np
import onnxruntime as ort
import pytest

import modelrepo
from tests.conftest import BUNDLED


def _newest(name):
    version = modelrepo.newest_version(BUNDLED, name)
    assert version is not None, f"{name} is missing from {BUNDLED}"
    return modelrepo.version_dir(BUNDLED, name, version), modelrepo.verify(BUNDLED, name, version)


def _accuracy(folder, split):
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    predicted = np.concatenate([session.run(None, {"images": split.images[i : i + 1000]})[0].argmax(1) for i in range(0, 10_000, 1000)])
    return float((predicted == split.labels).mean())


# The course's figure; the acceptance bar for the shipped model (it measures 92.04%).
TARGET = 0.92


def test_fp32_model_scores_what_its_card_says(test_split):
    folder, meta = _newest("fashion-mnist")
    accuracy = _accuracy(folder, test_split)
    assert accuracy >= TARGET, f"measured {accuracy:.4f}"
    assert meta.evaluation.test_accuracy == pytest.approx(accuracy, abs=1e-4)  # the card tells the truth
    assert (folder / "report" / "README.md").is_file() and (folder / "report" / "confusion_matrix.png").is_file()


def test_int8_model_is_within_half_a_point(test_split):
    fp32_folder, _ = _newest("fashion-mnist")
    int8_folder, meta = _newest("fashion-mnist-int8")
    fp32, int8 = _accuracy(fp32_folder, test_split), _accuracy(int8_folder, test_split)
    assert abs(fp32 - int8) <= 0.005, f"fp32 {fp32:.4f}, int8 {int8:.4f}"
    assert "training images" in meta.training["calibration_images"]
    ops = {node.op_type for node in __import__("onnx").load(str(int8_folder / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
