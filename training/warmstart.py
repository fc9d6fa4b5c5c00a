"""Warm starts: initial weights from a .keras file or from a published model.onnx.

A published version holds only model.onnx, so its weights are read back from the graph's
initialisers. They are matched to Keras layers by the graph's topology: the k-th Conv or
MatMul on the path from the input to the output is the k-th Conv2D or Dense layer. Shapes
alone cannot do it (both 256-filter convolutions have [256] biases, and several kernels
could be confused after a transpose), so shapes are only checked, and a parity check against
onnxruntime afterwards makes any wrong mapping (a flatten order, a transposed kernel) fail
loudly instead of training from garbage.
"""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import onnx
from onnx import numpy_helper

from training.export import ExportError, check_parity

# ONNX Conv kernels are [out, in, h, w]; Keras Conv2D kernels are [h, w, in, out].
_OIHW_TO_HWIO = (2, 3, 1, 0)


class WarmStartError(RuntimeError):
    """The initial weights cannot be loaded into the model, or do not reproduce it."""


def load_initial_weights(model: keras.Model, source: str | Path, parity_images: np.ndarray) -> None:
    """Set model's weights from source: a .onnx graph (parity-checked) or a Keras file."""
    source = Path(source)
    if source.suffix != ".onnx":
        model.load_weights(source)
        return
    proto = onnx.load(str(source))
    layers = [layer for layer in model.layers if layer.weights]
    pairs = onnx_weights(proto)
    if len(pairs) != len(layers):
        raise WarmStartError(f"{source}: {len(pairs)} weighted ops in the graph, the model has {len(layers)} weighted layers")
    for layer, (op, kernel, bias) in zip(layers, pairs):
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [kernel.shape, bias.shape] != expected:
            raise WarmStartError(f"{source}: {op} holds {[kernel.shape, bias.shape]}, layer {layer.name} wants {expected}")
        layer.set_weights([kernel, bias])
    try:
        check_parity(model, proto, parity_images)
    except ExportError as exc:
        raise WarmStartError(f"{source}: weights loaded but the model does not reproduce the graph: {exc}") from None


def onnx_weights(proto: onnx.ModelProto) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(op type, Keras-layout kernel, bias) for each Conv and MatMul(+Add), input to output."""
    initialisers = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found = []
    # ONNX requires nodes in topological order; this graph is one chain, so that order is the
    # order of the layers.
    for node in proto.graph.node:
        if node.op_type == "Conv":
            kernel, bias = initialisers[node.input[1]], initialisers[node.input[2]]
            found.append(("Conv", kernel.transpose(_OIHW_TO_HWIO), bias))
        elif node.op_type == "MatMul" and node.input[1] in initialisers:
            adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
            if len(adds) != 1:
                raise WarmStartError(f"MatMul {node.name} is followed by {len(adds)} Add ops, expected one (its bias)")
            add = adds[0]
            bias_name = next(name for name in add.input if name != node.output[0])
            found.append(("MatMul", initialisers[node.input[1]], initialisers[bias_name]))
    return found
