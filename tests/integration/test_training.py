"""The training CLI end to end on a small subset: train → export (parity gate) → publish, and the retraining job."""
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import modelrepo
from service.testing import ROOT
from tests.tiny_model import publish_tiny

SMALL = ["--epochs", "1", "--limit", "512", "--batch-size", "64"]


def run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_train_then_export_publishes_a_complete_version(tmp_path):
    trained = run("train", *SMALL, "--run-dir", str(tmp_path / "run"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "val_accuracy:" in trained.stdout  # Keras progress is shown
    exported = run("export", str(tmp_path / "run"), "--repository", str(tmp_path / "models"))
    assert exported.returncode == 0, exported.stderr[-3000:]
    folder = modelrepo.version_dir(tmp_path / "models", "fashion-mnist", 1)
    meta = modelrepo.verify(folder)
    assert meta.inputs[0].name == "images" and meta.outputs[0].name == "probabilities"
    assert meta.labels[0] == "T-shirt/top" and meta.labels[9] == "Ankle boot"
    assert meta.training["parity_max_abs_diff"] <= 1e-4 and meta.training["epochs_run"] == 1
    assert meta.training["config"]["seed"] == 42 and meta.training["training_seconds"] > 0
    assert meta.evaluation.test_images == 10_000 and len(meta.evaluation.confusion_matrix) == 10
    assert {"tensorflow", "keras", "tf2onnx", "onnx"} <= set(meta.tool_versions)
    assert {p.name for p in (folder / "report").iterdir()} == {"README.md", "training_curves.png", "confusion_matrix.png"}


def test_a_warm_start_continues_from_the_saved_weights_and_records_its_lineage(tmp_path):
    import keras
    import numpy as np

    first, second = tmp_path / "first", tmp_path / "second"
    assert run("train", *SMALL, "--run-dir", str(first)).returncode == 0
    # At learning rate 0 the weights cannot move, so the second run (EMA included) must end
    # where the first one did (up to the EMA's float rounding); a model that ignored
    # --init-from would differ by the size of its random initialisation.
    warm = run("train", *SMALL, "--learning-rate", "0", "--ema-momentum", "0.9",
               "--init-from", str(first / "model.keras"), "--run-dir", str(second))
    assert warm.returncode == 0, warm.stderr[-3000:]
    before, after = (keras.models.load_model(d / "model.keras").get_weights() for d in (first, second))
    assert all(np.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(before, after, strict=True))

    exported = run("export", str(second), "--repository", str(tmp_path / "models"))
    assert exported.returncode == 0, exported.stderr[-3000:]
    folder = modelrepo.version_dir(tmp_path / "models", "fashion-mnist", 1)
    commands = modelrepo.verify(folder).training["commands"]
    assert [c.split()[3] for c in commands] == ["train", "train", "export"]
    assert commands[0].endswith(f"--run-dir {first}") and f"--init-from {first / 'model.keras'}" in commands[1]
    assert commands[2] == f"python -m training export {second} --repository {tmp_path / 'models'}"
    assert commands[1] in (folder / "report" / "README.md").read_text()


def test_the_parity_gate_fails_loudly_on_a_wrong_graph(test_split):
    from onnx import numpy_helper

    from training.export import ExportError, check_parity, to_onnx
    from training.model import build_model

    model = build_model()
    proto = to_onnx(model)
    # Negate the last Dense kernel ([64, 10]): the kind of slip a converter bug makes.
    weights = next(t for t in proto.graph.initializer if list(t.dims) == [64, 10])
    weights.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(weights), weights.name))
    with pytest.raises(ExportError, match="differs from Keras"):
        check_parity(model, proto, test_split.images[:1000])


def _report(path):
    return json.loads(path.read_text())


def test_retrain_promotes_and_prunes(tmp_path):
    repo = tmp_path / "models"
    # A 1-epoch candidate on 512 images lands anywhere from chance to ~0.4, so the bar sits below chance.
    publish_tiny(repo, accuracy=0.05)
    publish_tiny(repo, seed=1, accuracy=0.05)
    result = run("retrain", *SMALL, "--repository", str(repo), "--min-accuracy", "0.01", "--keep", "2", "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    report = _report(tmp_path / "r.json")
    assert report["status"] == "promoted" and report["version"] == 3 and report["current_version"] == 2
    assert report["threshold"] == pytest.approx(0.045) and report["pruned"] == [1]
    assert modelrepo.list_versions(repo, "fashion-mnist") == [2, 3]


def test_retrain_rejects_a_worse_candidate(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo, accuracy=0.99)
    result = run("retrain", *SMALL, "--repository", str(repo), "--report", str(tmp_path / "r.json"))
    assert result.returncode == 3, result.stdout + result.stderr[-3000:]
    report = _report(tmp_path / "r.json")
    assert report["status"] == "rejected" and report["threshold"] == pytest.approx(0.985)
    assert report["candidate_accuracy"] < 0.985
    assert modelrepo.list_versions(repo, "fashion-mnist") == [1]


def test_a_failed_job_exits_with_its_own_code_and_a_report(tmp_path):
    result = run("retrain", "--epochs", "1", "--limit", "64", "--batch-size", "0", "--repository", str(tmp_path / "models"),
                 "--report", str(tmp_path / "r.json"))
    assert result.returncode == 4
    assert _report(tmp_path / "r.json")["status"] == "failed"
    assert modelrepo.list_versions(tmp_path / "models", "fashion-mnist") == []


def test_concurrent_retrains_get_distinct_versions(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo, accuracy=0.10)
    # The gate always passes here: this test is about version numbers, not about the gate.
    args = ["retrain", *SMALL, "--repository", str(repo), "--min-accuracy", "0", "--max-regression", "1"]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda seed: run(*args, "--seed", str(seed)), [1, 2]))
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
    assert modelrepo.list_versions(repo, "fashion-mnist") == [1, 2, 3]
    for version in (2, 3):
        modelrepo.verify(modelrepo.version_dir(repo, "fashion-mnist", version))
