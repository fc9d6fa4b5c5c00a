"""Open Inference Protocol v2 tensors: JSON and Triton's binary extension ⇄ numpy."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import orjson

from modelrepo import TensorSpec
from service.errors import BadRequest, PayloadTooLarge
from service.runtime import NUMPY_TYPES

HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass
class InferRequest:
    """A parsed v2 request: its JSON header and the binary blobs that followed it, in order."""

    header: dict
    blobs: bytes = b""


def parse_body(body: bytes, header_length: str | None) -> InferRequest:
    """Split a v2 body into its JSON header and binary part (Triton's binary extension)."""
    if header_length is None:
        json_part, blobs = body, b""
    else:
        try:
            n = int(header_length)
        except ValueError:
            raise BadRequest(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 < n <= len(body):
            raise BadRequest(f"{HEADER_LENGTH} {n} does not fit a body of {len(body)} bytes")
        json_part, blobs = body[:n], body[n:]
    try:
        header = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list) or not header["inputs"]:
        raise BadRequest('the body must be a JSON object with a non-empty "inputs" list')
    return InferRequest(header, blobs)


def _describe(datatype: object, shape: object) -> str:
    return f"{datatype} {shape}"


def input_tensor(request: InferRequest, spec: TensorSpec, max_images: int) -> np.ndarray:
    """The model's one input from the request, checked against spec; errors say what came in."""
    inputs = request.header["inputs"]
    names = [i.get("name") if isinstance(i, dict) else None for i in inputs]
    if names != [spec.name]:
        raise BadRequest(f"expected one input named {spec.name!r}, got {names}")
    tensor = inputs[0]
    datatype, shape = tensor.get("datatype"), tensor.get("shape")
    expected = _describe(spec.datatype, [d if d >= 0 else "N" for d in spec.shape])
    if datatype != spec.datatype or not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape) \
            or len(shape) != len(spec.shape) or any(e >= 0 and e != d for e, d in zip(spec.shape, shape)) or shape[0] < 1:
        raise BadRequest(f"input {spec.name!r}: expected {expected}, got {_describe(datatype, shape)}")
    if shape[0] > max_images:
        raise PayloadTooLarge(f"{shape[0]} images in one request, limit {max_images} (MAX_BATCH_IMAGES)")
    count = math.prod(shape)
    dtype = np.dtype(NUMPY_TYPES[spec.datatype]).newbyteorder("<")
    binary_size = (tensor.get("parameters") or {}).get("binary_data_size")
    if binary_size is not None:
        if binary_size != count * dtype.itemsize or len(request.blobs) != binary_size:
            raise BadRequest(f"input {spec.name!r}: binary_data_size {binary_size} and {len(request.blobs)} bytes received, "
                             f"shape {shape} needs {count * dtype.itemsize}")
        array = np.frombuffer(request.blobs, dtype=dtype)
    else:
        try:
            array = np.asarray(tensor.get("data"), dtype=dtype).reshape(-1)
        except (TypeError, ValueError):
            raise BadRequest(f"input {spec.name!r}: data must be numbers of type {spec.datatype}") from None
        if array.size != count:
            raise BadRequest(f"input {spec.name!r}: data has {array.size} values, shape {shape} needs {count}")
    array = array.reshape(shape).astype(dtype.newbyteorder("="), copy=False)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BadRequest(f"input {spec.name!r}: NaN or Inf values")
    return array


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


def encode_outputs(request: InferRequest, name: str, probabilities: np.ndarray, labels: list[str]) -> tuple[list[dict], bytes]:
    """The response's outputs (honouring requested ones) and any binary blob that follows the JSON."""
    wanted = request.header.get("outputs") or [{"name": name}]
    default_binary = bool((request.header.get("parameters") or {}).get("binary_data_output", False))
    outputs, blobs = [], []
    for out in wanted:
        if not isinstance(out, dict) or out.get("name") != name:
            raise BadRequest(f"unknown output {out.get('name') if isinstance(out, dict) else out!r}; the model has {name!r}")
        params = out.get("parameters") or {}
        k = params.get("classification")
        if k is not None:
            if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(labels):
                raise BadRequest(f"classification must be an integer 1-{len(labels)}, got {k!r}")
            rows = classification(probabilities, k, labels)
            entry, data, blob = {"name": name, "datatype": "BYTES", "shape": [len(rows), k]}, rows, lambda: _bytes_blob(rows)
        else:
            entry, data = {"name": name, "datatype": "FP32", "shape": list(probabilities.shape)}, probabilities
            blob = lambda: np.ascontiguousarray(probabilities, dtype="<f4").tobytes()  # noqa: E731
        if params.get("binary_data", default_binary):
            payload = blob()
            entry["parameters"] = {"binary_data_size": len(payload)}
            blobs.append(payload)
        else:
            entry["data"] = data.reshape(-1) if isinstance(data, np.ndarray) else [v for row in data for v in row]
        outputs.append(entry)
    return outputs, b"".join(blobs)
