"""Honest evaluation of an exported model: onnxruntime on the test split, nothing else."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelrepo.reference import reference
from modelrepo.schema import ClassMetrics, Evaluation, Reference
from training.contract import INPUT_RANGE, LABELS
from training.data import Split
from training.hardware import hardware


def predict_onnx(path: Path, images: np.ndarray, batch_size: int = 500,
                 optimization: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL) -> np.ndarray:
    """Probabilities for images, batch by batch, on the CPU.

    With ORT_DISABLE_ALL an int8 QDQ graph is not fused into integer kernels: it runs as
    dequantize → float op → quantize, the same on every CPU (training/cpu_check.py uses it).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = optimization
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: images[i : i + batch_size]})[0] for i in range(0, len(images), batch_size)])


def evaluate_onnx(path: Path, split: Split, labels: list[str] = LABELS) -> Evaluation:
    """Accuracy, per-class precision and recall and the confusion matrix (rows: true class)."""
    predicted = predict_onnx(path, split.images).argmax(1)
    n = len(labels)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (split.labels.astype(np.int64), predicted), 1)
    hits = np.diag(confusion)
    # max(…, 1) keeps a class that was never predicted at precision 0 instead of NaN.
    precision = hits / np.maximum(confusion.sum(0), 1)
    recall = hits / np.maximum(confusion.sum(1), 1)
    return Evaluation(
        test_accuracy=float(hits.sum() / len(split)),
        test_images=len(split),
        per_class=[ClassMetrics(label=label, precision=float(p), recall=float(r)) for label, p, r in zip(labels, precision, recall)],
        confusion_matrix=confusion.tolist(),
        # int8 kernels differ between CPUs, so an accuracy is only meaningful with its CPU.
        hardware=hardware(),
    )


def reference_onnx(path: Path, split: Split, split_name: str = "fashion-mnist test") -> Reference:
    """The version's drift reference: class mix, confidence and input intensity on a held-out split."""
    return reference(predict_onnx(path, split.images), split.images, INPUT_RANGE, f"{split_name} ({len(split)})")
