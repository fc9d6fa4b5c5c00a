"""From a trained run to a published version: export, evaluate, describe, publish."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import modelrepo
from modelrepo import Metadata, TensorSpec
from modelrepo.schema import Evaluation
from training.contract import INPUT_NAME, INPUT_RANGE, LABELS, OUTPUT_NAME
from training.data import Dataset
from training.evaluate import evaluate_onnx, reference_onnx
from training.report import write_report

if TYPE_CHECKING:
    import keras

# Module names, not distribution names: TensorFlow installs as tensorflow or tensorflow-cpu.
TRAINING_TOOLS = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime")

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


def tool_versions(modules: tuple[str, ...] = TRAINING_TOOLS) -> dict[str, str]:
    """Versions of the tools that made a version (importing them: only those that took part)."""
    return {name: importlib.import_module(name).__version__ for name in modules}


def base_metadata(name: str, evaluation: Evaluation | None, training: dict, tools: tuple[str, ...] = TRAINING_TOOLS,
                  **extra) -> Metadata:
    return Metadata(
        name=name,
        labels=LABELS,
        inputs=[TensorSpec(name=INPUT_NAME, datatype="FP32", shape=[-1, 28, 28, 1], range=INPUT_RANGE)],
        outputs=[TensorSpec(name=OUTPUT_NAME, datatype="FP32", shape=[-1, 10])],
        preprocessing=PREPROCESSING,
        evaluation=evaluation,
        training=training,
        tool_versions=tool_versions(tools),
        **({"sha256": "", "description": DESCRIPTION} | extra),
    )


def prepare(model: keras.Model, run: dict, data: Dataset, name: str, staging: Path) -> Candidate:
    """Export (parity-gated) and evaluate into staging/, and describe it."""
    from training.export import export_onnx  # noqa: PLC0415  (TensorFlow: only when exporting)

    diff = export_onnx(model, staging / modelrepo.MODEL_FILE, data.test.images)
    evaluation = evaluate_onnx(staging / modelrepo.MODEL_FILE, data.test)
    training = {key: value for key, value in run.items() if key != "history"} | {"parity_max_abs_diff": diff}
    # The reference the service's drift alerts compare live traffic with (service/quality.py).
    reference = reference_onnx(staging / modelrepo.MODEL_FILE, data.test)
    metadata = base_metadata(name, evaluation, training, sha256=modelrepo.sha256_file(staging / modelrepo.MODEL_FILE),
                             reference=reference)
    write_report(metadata, run.get("history"), staging / modelrepo.REPORT_DIR)
    return Candidate(staging, metadata, run.get("history"))


def publish(candidate: Candidate, repository: Path, accept: Callable[[], bool] | None = None) -> int:
    """Publish the candidate as the next version (the gate runs under the repository lock)."""
    return modelrepo.publish(repository, candidate.metadata.name, candidate.staging, candidate.metadata, accept)
