"""The training CLI end to end on a small subset: train → export (parity gate) → publish,
warm starts from a published model.onnx, and a run stopped before it finished."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import modelrepo
from tests.harness import ROOT

pytestmark = pytest.mark.slow  # trains with TensorFlow

SMALL = ["--epochs", "1", "--limit", "512", "--batch-size", "64"]


def run(*args, timeout=600, env=None):
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else os.environ | env)


def _card_links_resolve(folder):
    card = (folder / "report" / "README.md").read_text()
    for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", card):
        assert (folder / "report" / image).is_file(), f"{folder.name}: the card links {image}, which does not exist"
    return card


def test_train_then_export_publishes_a_complete_version(tmp_path):
    trained = run("train", *SMALL, "--run-dir", str(tmp_path / "run"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "val_accuracy:" in trained.stdout  # Keras progress is shown
    exported = run("export", str(tmp_path / "run"), "--repository", str(tmp_path / "models"))
    assert exported.returncode == 0, exported.stderr[-3000:]
    folder = modelrepo.version_dir(tmp_path / "models", "fashion-mnist", 1)
    meta = modelrepo.verify(tmp_path / "models", "fashion-mnist", 1)
    assert meta.inputs[0].name == "images" and meta.outputs[0].name == "probabilities"
    assert meta.labels[0] == "T-shirt/top" and meta.labels[9] == "Ankle boot"
    assert meta.training["parity_max_abs_diff"] <= 1e-4 and meta.training["epochs_run"] == 1
    assert meta.training["config"]["seed"] == 42 and meta.training["training_seconds"] > 0
    assert meta.evaluation.test_images == 10_000 and len(meta.evaluation.confusion_matrix) == 10
    assert {"tensorflow", "keras", "tf2onnx", "onnx"} <= set(meta.tool_versions)
    assert {p.name for p in (folder / "report").iterdir()} == {"README.md", "training_curves.png", "confusion_matrix.png"}
    assert meta.evaluation.hardware["cpu"] and meta.evaluation.hardware["avx2"] in ("yes", "no")
    card = _card_links_resolve(folder)
    assert "validation split only" in card and "test images were read once" in card


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
    commands = modelrepo.verify(tmp_path / "models", "fashion-mnist", 1).training["commands"]
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


def test_warm_start_reads_the_weights_of_a_published_onnx_by_topology(tmp_path, test_split):
    import onnx

    from training.model import build_model
    from training.warmstart import WarmStartError, load_initial_weights

    shipped = ROOT / "models" / "fashion-mnist" / "1" / "model.onnx"
    model = build_model()
    # Raises unless Keras and onnxruntime then agree within 1e-4 with identical argmax.
    load_initial_weights(model, shipped, test_split.images[:500])
    probabilities = model.predict(test_split.images[:2000], verbose=0)
    assert (probabilities.argmax(1) == test_split.labels[:2000]).mean() > 0.9

    # A graph the Keras layers cannot express (it flattens channels-first): same tensor
    # shapes everywhere, so only the parity check can notice, and it must fail loudly.
    proto = onnx.load(str(shipped))
    transpose = next(n for n in proto.graph.node if n.op_type == "Transpose")
    for node in proto.graph.node:
        node.input[:] = [transpose.input[0] if name == transpose.output[0] else name for name in node.input]
    proto.graph.node.remove(transpose)
    onnx.save(proto, str(tmp_path / "channels-first.onnx"))
    with pytest.raises(WarmStartError, match="does not reproduce the graph"):
        load_initial_weights(build_model(), tmp_path / "channels-first.onnx", test_split.images[:500])


def test_a_stopped_run_is_exported_from_its_best_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    train = subprocess.Popen([sys.executable, "-m", "training", "train", "--epochs", "50", "--limit", "2048", "--batch-size", "64",
                              "--run-dir", str(run_dir)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # history.csv gets its row after best.keras is saved, so one row means one whole checkpoint.
        deadline = time.monotonic() + 600
        while not ((run_dir / "history.csv").is_file() and len((run_dir / "history.csv").read_text().splitlines()) >= 2):
            assert train.poll() is None and time.monotonic() < deadline, "training ended before its first checkpoint"
            time.sleep(0.2)
    finally:
        train.send_signal(signal.SIGKILL)
        train.wait()
    assert not (run_dir / "model.keras").exists() and not (run_dir / "run.json").exists()

    exported = run("export", str(run_dir), "--repository", str(tmp_path / "models"))
    assert exported.returncode == 0, exported.stderr[-3000:]
    meta = modelrepo.verify(tmp_path / "models", "fashion-mnist", 1)
    assert meta.training["interrupted"] is True and meta.training["epochs_run"] >= 1
    assert meta.training["config"]["epochs"] == 50
    assert meta.training["commands"][0].startswith("python -m training train --epochs 50")
    assert meta.evaluation.test_images == 10_000
