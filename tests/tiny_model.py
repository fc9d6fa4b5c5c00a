"""Tiny real ONNX models with the production contract, built without TensorFlow in milliseconds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import modelrepo
from modelrepo import Metadata, TensorSpec
from modelrepo.schema import Reference
from training.contract import LABELS


def tiny_onnx(seed: int = 0, input_name: str = "images", output_name: str = "probabilities", classes: int = 10,
              size: tuple[int, int] = (28, 28)) -> onnx.ModelProto:
    """images FP32 [N,height,width,1] → flatten → dense → softmax → probabilities FP32 [N,classes]."""
    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array(rng.normal(0, 0.5, (size[0] * size[1], classes)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(0, 0.1, classes).astype(np.float32), "b")
    nodes = [
        helper.make_node("Flatten", [input_name], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["logits0"]),
        helper.make_node("Add", ["logits0", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [output_name], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", *size, 1])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", classes])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tiny_metadata(name: str = "fashion-mnist", accuracy: float | None = 0.91, size: tuple[int, int] = (28, 28)) -> Metadata:
    evaluation = None
    if accuracy is not None:
        evaluation = {"test_accuracy": accuracy, "test_images": 10000, "per_class": [], "confusion_matrix": []}
    return Metadata(
        name=name, labels=LABELS,
        inputs=[TensorSpec(name="images", datatype="FP32", shape=[-1, *size, 1], range=(0.0, 1.0))],
        outputs=[TensorSpec(name="probabilities", datatype="FP32", shape=[-1, 10])],
        preprocessing="tiny test model", sha256="", evaluation=evaluation,
        # A drift reference (uniform classes), so the reference gauges are exported as for real versions.
        reference=None if accuracy is None else Reference(
            split="tiny", images=10000, class_share=[0.1] * 10, confidence_mean=0.8, confidence_cumulative={},
            input_mean_intensity=0.3, input_intensity_cumulative={}),
    )


def publish_tiny(repository: Path, name: str = "fashion-mnist", seed: int = 0, accuracy: float | None = 0.91,
                 model: onnx.ModelProto | None = None, size: tuple[int, int] = (28, 28)) -> int:
    """Publish a tiny model through the real repository code; returns its version."""
    staging = repository.parent / f".staging-{name}-{seed}"
    staging.mkdir(parents=True, exist_ok=True)
    onnx.save(model or tiny_onnx(seed, size=size), staging / modelrepo.MODEL_FILE)
    return modelrepo.publish(repository, name, staging, tiny_metadata(name, accuracy, size))
