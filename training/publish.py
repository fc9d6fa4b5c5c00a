"""From a trained run to a published version: export, evaluate, describe, publish."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras

import modelrepo
from modelrepo import Metadata, TensorSpec
from modelrepo.schema import Evaluation
from training.data import Dataset
from training.evaluate import evaluate_onnx
from training.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from training.report import write_report

PREPROCESSING = (
    "The model takes FP32 [batch, 28, 28, 1] in [0, 1]: a light object on a dark background, as in "
    "Fashion-MNIST. The service turns any image into that: EXIF orientation, grayscale, fit into "
    "28×28 keeping the aspect ratio (Lanczos), pad with the background, invert when the border is "
    "light (product photos on white), scale to [0, 1]."
)
DESCRIPTION = "The course CNN (Hands-On ML, ch. 14) trained on Fashion-MNIST; 1,413,834 parameters."


@dataclass
class Candidate:
    """An exported, evaluated model waiting in a staging folder to be published."""

    staging: Path
    metadata: Metadata
    history: dict[str, list[float]] | None

    @property
    def accuracy(self) -> float:
        return self.metadata.evaluation.test_accuracy


def tool_versions() -> dict[str, str]:
    # Module versions, not distribution names: TensorFlow installs as tensorflow or tensorflow-cpu.
    import onnx, onnxruntime, tensorflow, tf2onnx  # noqa: E401, PLC0415

    return {module.__name__: module.__version__ for module in (tensorflow, keras, tf2onnx, onnx, onnxruntime)}


def base_metadata(name: str, evaluation: Evaluation | None, training: dict, **extra) -> Metadata:
    return Metadata(
        name=name,
        labels=modelrepo.FASHION_MNIST_LABELS,
        inputs=[TensorSpec(name=INPUT_NAME, datatype="FP32", shape=[-1, 28, 28, 1], range=(0.0, 1.0))],
        outputs=[TensorSpec(name=OUTPUT_NAME, datatype="FP32", shape=[-1, 10])],
        preprocessing=PREPROCESSING,
        evaluation=evaluation,
        training=training,
        tool_versions=tool_versions(),
        **({"sha256": "", "description": DESCRIPTION} | extra),
    )


def load_run(run_dir: Path) -> tuple[keras.Model, dict]:
    """The Keras model and run summary that `train` saved."""
    return keras.models.load_model(run_dir / "model.keras"), json.loads((run_dir / "run.json").read_text())


def prepare(model: keras.Model, run: dict, data: Dataset, name: str, staging: Path) -> Candidate:
    """Export (parity-gated) and evaluate into staging/, and describe it."""
    diff = export_onnx(model, staging / modelrepo.MODEL_FILE, data.test.images)
    evaluation = evaluate_onnx(staging / modelrepo.MODEL_FILE, data.test)
    training = {key: value for key, value in run.items() if key != "history"} | {"parity_max_abs_diff": diff}
    metadata = base_metadata(name, evaluation, training, sha256=modelrepo.sha256_file(staging / modelrepo.MODEL_FILE))
    write_report(metadata, run.get("history"), staging / "report")
    return Candidate(staging, metadata, run.get("history"))


def publish(candidate: Candidate, repository: Path, accept: Callable[[], bool] | None = None) -> int:
    """Publish the candidate as the next version (the gate runs under the repository lock)."""
    return modelrepo.publish(repository, candidate.metadata.name, candidate.staging, candidate.metadata, accept)
