"""Keras → ONNX with tf2onnx, gated on parity with Keras."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from training.contract import INPUT_NAME, OUTPUT_NAME
from training.model import INPUT_SHAPE

OPSET = 17
PARITY_IMAGES = 1_000
PARITY_ATOL = 1e-4


class ExportError(RuntimeError):
    """The exported graph does not reproduce the Keras model."""


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in list(graph.input) + list(graph.output):
        if value.name == old:
            value.name = new


def to_onnx(model: keras.Model) -> onnx.ModelProto:
    """The model as ONNX: `images` FP32 [batch,28,28,1] → `probabilities` FP32 [batch,10]."""
    # from_keras breaks on Keras 3 (KeyError 'keras_tensor_N'); a tf.function does not.
    signature = (tf.TensorSpec((None, *INPUT_SHAPE), tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=signature)
    def serve(images):
        return model(images, training=False)

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=OPSET)
    # tf2onnx names tensors after TF ops ("images:0", "Identity:0"); the contract wants plain names.
    _rename(proto.graph, proto.graph.input[0].name, INPUT_NAME)
    _rename(proto.graph, proto.graph.output[0].name, OUTPUT_NAME)
    for dim_owner in (proto.graph.input[0], proto.graph.output[0]):
        dim_owner.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.checker.check_model(proto)
    return proto


def check_parity(model: keras.Model, proto: onnx.ModelProto, images: np.ndarray) -> float:
    """Max |Keras − onnxruntime| over images; raises ExportError past tolerance or on any argmax flip."""
    expected = model.predict(images, batch_size=256, verbose=0)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    diff = float(np.max(np.abs(expected - got)))
    flips = int(np.sum(expected.argmax(1) != got.argmax(1)))
    if diff > PARITY_ATOL or flips:
        raise ExportError(f"ONNX differs from Keras: max |diff| {diff:.2e} (limit {PARITY_ATOL:.0e}), {flips} argmax flips")
    return diff


def export_onnx(model: keras.Model, path: Path, parity_images: np.ndarray) -> float:
    """Write model.onnx after the parity gate; return the max difference seen."""
    proto = to_onnx(model)
    diff = check_parity(model, proto, parity_images[:PARITY_IMAGES])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, path)
    return diff
