"""Open Inference Protocol v2 tensors: JSON and Triton's binary extension ⇄ numpy (no Flask here).

Everything a request asks for is checked before the model runs: the input against the model's
spec (datatype, shape, declared value range) and the requested outputs, so that no client
mistake is discovered, or costs a batch slot, after inference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import orjson

from modelrepo import NUMPY_DTYPES, TensorSpec
from service.errors import BadRequest, PayloadTooLarge
from service.protocol import InferenceRequest, parse

HEADER_LENGTH = "Inference-Header-Content-Length"
# What JSON numbers numpy may turn into each kind of tensor: no strings, no booleans as floats.
_JSON_KINDS = {"f": "fiu", "i": "iu", "u": "iu", "b": "b"}


@dataclass(frozen=True)
class Output:
    """One requested output: as probabilities or top-k classes, as JSON or binary."""

    name: str
    classification: int | None
    binary: bool


def parse_request(body: bytes, header_length: str | None) -> tuple[InferenceRequest, bytes]:
    """A v2 body as its typed JSON header and the binary blobs after it (Triton's extension)."""
    if header_length is None:
        return parse(InferenceRequest, body), b""
    if not header_length.isascii() or not header_length.isdigit():
        raise BadRequest(f"{HEADER_LENGTH} must be a byte count, got {header_length[:40]!r}")
    n = int(header_length)
    if not 0 < n <= len(body):
        raise BadRequest(f"{HEADER_LENGTH} {n} does not fit a body of {len(body)} bytes")
    return parse(InferenceRequest, body[:n]), body[n:]


def input_tensor(request: InferenceRequest, blobs: bytes, spec: TensorSpec, max_images: int) -> np.ndarray:
    """The model's one input from the request, checked against spec; errors say what came in."""
    names = [i.name for i in request.inputs]
    if names != [spec.name]:
        raise BadRequest(f"expected one input named {spec.name!r}, got {names}")
    tensor = request.inputs[0]
    expected = f"{spec.datatype} {[d if d >= 0 else 'N' for d in spec.shape]}"
    shape = tensor.shape
    if tensor.datatype != spec.datatype or len(shape) != len(spec.shape) or any(e >= 0 and e != d for e, d in zip(spec.shape, shape)) \
            or min(shape) < 0 or shape[0] < 1:
        raise BadRequest(f"input {spec.name!r}: expected {expected}, got {tensor.datatype[:20]} {shape}")
    if shape[0] > max_images:
        raise PayloadTooLarge(f"{shape[0]} images in one request, limit {max_images} (MAX_BATCH_IMAGES)")
    dtype = NUMPY_DTYPES[spec.datatype]
    count = math.prod(shape)
    binary_size = tensor.parameters.binary_data_size if tensor.parameters else None
    if binary_size is not None:
        array = _from_binary(blobs, binary_size, count, dtype, spec.name, shape)
    elif tensor.data is None:
        raise BadRequest(f"input {spec.name!r}: no data and no binary_data_size")
    else:
        array = _from_json(tensor.data, count, dtype, spec, shape)
    return _check_range(array.reshape(shape), spec)


def _from_binary(blobs: bytes, size: int, count: int, dtype: np.dtype, name: str, shape: list[int]) -> np.ndarray:
    if size != count * dtype.itemsize or len(blobs) != size:
        raise BadRequest(f"input {name!r}: binary_data_size {size} and {len(blobs)} bytes received, "
                         f"shape {shape} needs {count * dtype.itemsize}")
    return np.frombuffer(blobs, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)


def _from_json(data: list, count: int, dtype: np.dtype, spec: TensorSpec, shape: list[int]) -> np.ndarray:
    try:
        array = np.asarray(data)
    except (TypeError, ValueError):  # ragged nesting, or deeper than numpy allows
        raise BadRequest(f"input {spec.name!r}: data must be numbers nested as the shape, or flat") from None
    if array.dtype.kind not in _JSON_KINDS[dtype.kind]:
        raise BadRequest(f"input {spec.name!r}: data must be numbers of type {spec.datatype}, got {array.dtype.kind!r} values")
    if array.size != count:
        raise BadRequest(f"input {spec.name!r}: data has {array.size} values, shape {shape} needs {count}")
    if dtype.kind == "f" and array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BadRequest(f"input {spec.name!r}: NaN or Inf values")
    return _check_range(array, spec).astype(dtype, copy=False).reshape(-1)


def _check_range(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    # Checked in the array's own precision: 1e39 is finite as JSON's float64, infinite as FP32.
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BadRequest(f"input {spec.name!r}: NaN or Inf values")
    if spec.range is not None and array.size:
        low, high = float(array.min()), float(array.max())
        if low < spec.range[0] or high > spec.range[1]:
            raise BadRequest(f"input {spec.name!r}: values must lie in [{spec.range[0]:g}, {spec.range[1]:g}], got [{low:g}, {high:g}]")
    return array


def requested_outputs(request: InferenceRequest, spec: TensorSpec, labels: list[str]) -> list[Output]:
    """What the client asked to get back, checked before the model runs."""
    default_binary = request.parameters.binary_data_output if request.parameters else False
    wanted = request.outputs or []
    outputs = [Output(spec.name, None, default_binary)] if not wanted else []
    for out in wanted:
        if out.name != spec.name:
            raise BadRequest(f"unknown output {out.name[:60]!r}; the model has {spec.name!r}")
        params = out.parameters
        k = params.classification if params else None
        if k is not None and k > len(labels):
            raise BadRequest(f"classification must be an integer 1-{len(labels)}, got {k}")
        binary = params.binary_data if params and params.binary_data is not None else default_binary
        outputs.append(Output(out.name, k, binary))
    return outputs


def classification(probabilities: np.ndarray, k: int, labels: list[str]) -> list[list[str]]:
    """Triton's classification extension: 'prob:index:label' for the top k, per row."""
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [[f"{row[i]:f}:{i}:{labels[i]}" for i in idx] for row, idx in zip(probabilities, top)]


def _bytes_blob(rows: list[list[str]]) -> bytes:
    # BYTES tensors in binary form: each element is a 4-byte little-endian length, then the bytes.
    parts = []
    for value in (v.encode() for row in rows for v in row):
        parts += [len(value).to_bytes(4, "little"), value]
    return b"".join(parts)


def encode_response(head: dict, outputs: list[Output], probabilities: np.ndarray, labels: list[str]) -> tuple[bytes, int | None]:
    """The response body and, when binary outputs follow the JSON, the JSON header's length."""
    entries, blobs = [], []
    for out in outputs:
        if out.classification is not None:
            rows = classification(probabilities, out.classification, labels)
            entry = {"name": out.name, "datatype": "BYTES", "shape": [len(rows), out.classification]}
            data, blob = [v for row in rows for v in row], (lambda rows=rows: _bytes_blob(rows))
        else:
            entry = {"name": out.name, "datatype": "FP32", "shape": list(probabilities.shape)}
            data, blob = probabilities.reshape(-1), (lambda: np.ascontiguousarray(probabilities, dtype="<f4").tobytes())
        if out.binary:
            payload = blob()
            entry["parameters"] = {"binary_data_size": len(payload)}
            blobs.append(payload)
        else:
            entry["data"] = data
        entries.append(entry)
    json_part = orjson.dumps(head | {"outputs": entries}, option=orjson.OPT_SERIALIZE_NUMPY)
    return (json_part + b"".join(blobs), len(json_part)) if blobs else (json_part, None)
