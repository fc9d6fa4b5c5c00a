"""Hypothesis strategies for hostile input: image bytes and Open Inference Protocol v2 bodies.

A v2 body is valid but for at most three of its fields (FIELDS), each of which is then a wrong
value of its own kind, any JSON value, or left out: deep code is reached, and a failure shrinks
to a body that is wrong in one place. Shared by the in-process property tests and schemathesis.
"""
from __future__ import annotations

import json
import re

import numpy as np
from hypothesis import strategies as st

from tests.hostile_images import samples

ABSENT = object()  # a field left out of its object
SEEDS = samples()
MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb", b"GIF89a", b"GIF87a", b"RIFF\x10\0\0\0WEBPVP8 ",
         b"RIFF\x10\0\0\0WEBPVP8L", b"II*\0", b"MM\0*", b"BM", b"\0\0\1\0", b"8BPS", b"P5\n", b"%!PS-Adobe-3.0 EPSF-3.0\n"]
# A JSON array nested this deep stands in the serialised body: orjson parses up to 1024 levels
# and serialises only 254, so the deep ones get past parsing and fail when echoed back.
_DEEP = re.compile(r'"\\u0000deep:(\d+)"')
INPUT_SHAPE = [28, 28, 1]
PIXELS = 28 * 28
MODEL_INPUT, MODEL_OUTPUT = "images", "probabilities"

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=6)
deep_arrays = st.integers(1, 1100).map(lambda depth: f"\0deep:{depth}")


# -- images ------------------------------------------------------------------------------------


def random_bytes() -> st.SearchStrategy[bytes]:
    """Noise, some of it behind a real format's signature so that the format's parser runs."""
    return st.binary(max_size=256) | st.builds(lambda magic, tail: magic + tail, st.sampled_from(MAGIC), st.binary(max_size=256))


@st.composite
def mutated_images(draw) -> bytes:
    """A valid small file of some format, truncated, bit-flipped, overwritten or spliced."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "byte", "splice"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and data:
            data[at] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF]))
        elif kind == "splice":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def image_bytes() -> st.SearchStrategy[bytes]:
    """Valid files, damaged files and noise, in that order of preference when shrinking."""
    return st.sampled_from([SEEDS[name] for name in sorted(SEEDS)]) | mutated_images() | random_bytes()


# -- v2 bodies ---------------------------------------------------------------------------------


def wrong(*variants: st.SearchStrategy) -> st.SearchStrategy:
    """A field-specific wrong value, else any JSON value, else the field left out."""
    return st.one_of(*variants, json_values, st.just(ABSENT))


def _prune(value):
    """The body with ABSENT fields removed, at every level."""
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not ABSENT}
    if isinstance(value, list):
        return [_prune(v) for v in value if v is not ABSENT]
    return value


def dumps(value) -> bytes:
    """JSON text of value, with deep_arrays markers replaced by arrays nested that deep; b"" for ABSENT."""
    if value is ABSENT:
        return b""
    text = json.dumps(_prune(value), allow_nan=False)
    return _DEEP.sub(lambda m: "[" * int(m.group(1)) + "]" * int(m.group(1)), text).encode()


@st.composite
def pixel_values(draw, count: int) -> np.ndarray:
    """count FP32 values: one fill value and a few others at random places; one value in four out of [0, 1]."""
    valid = st.floats(0, 1, width=32)
    wrong = st.sampled_from([-1.0, 1e-45, 3e38, -3e38, 3.4028235e38]) | st.floats(width=32, allow_nan=False, allow_infinity=False)
    value = st.one_of(valid, valid, valid, wrong)
    values = np.full(count, draw(value), dtype=np.float32)
    for index, other in draw(st.dictionaries(st.integers(0, count - 1), value, max_size=3)).items():
        values[index] = other
    return values


# The parts of a v2 request that v2_documents can get wrong; each example breaks at most three.
FIELDS = ("body", "id", "parameters", "inputs", "outputs", "input.name", "input.datatype", "input.shape", "input.data",
          "input.parameters", "input.binary_data_size", "output.name", "output.parameters", "output.classification",
          "output.binary_data", "header_length")


@st.composite
def v2_documents(draw, binary: bool | None = None) -> tuple[object, bytes, bool]:
    """(JSON part as Python values, binary part, whether the header length is broken) of a v2 request."""
    # Half the documents are valid: inference, the outputs and the echoed id must hold up too.
    broken = draw(st.just(frozenset()) | st.frozensets(st.sampled_from(FIELDS), min_size=1, max_size=3))

    def pick(name: str, valid, *variants: st.SearchStrategy):
        return draw(wrong(*variants)) if name in broken else valid

    n = draw(st.integers(1, 3))
    shape = [n, *INPUT_SHAPE]
    values = draw(pixel_values(n * PIXELS))
    binary = draw(st.booleans()) if binary is None else binary
    nested = draw(st.booleans())
    blob = values.astype("<f4").tobytes()
    flat = values.tolist()
    if "input.data" in broken:  # built only when needed: a few thousand values each
        data = draw(wrong(st.sampled_from([values.reshape(n, PIXELS).tolist(), [str(v) for v in flat], flat[:-1], flat + [0.0],
                                           [flat], [[v] for v in flat[:PIXELS]] + flat[PIXELS:]])))
    else:
        data = values.reshape(shape).tolist() if nested else flat
    shapes = st.sampled_from([[0, *INPUT_SHAPE], [-1, *INPUT_SHAPE], [10**6, *INPUT_SHAPE], [2**63, *INPUT_SHAPE], [n, 28, 28],
                              [n, 28, 28, 1, 1], [n, 28.0, 28, 1], [True, 28, 28, 1], [n, 784, 1, 1], [str(n), 28, 28, 1]])
    sizes = st.sampled_from([len(blob) - 4, len(blob) + 4, 0, -1, 2**64, float(len(blob)), str(len(blob)), True])
    tensor = {
        "name": pick("input.name", MODEL_INPUT, st.sampled_from(["", MODEL_OUTPUT, "IMAGES"])),
        "datatype": pick("input.datatype", "FP32", st.sampled_from(["FP16", "FP64", "INT64", "UINT8", "BYTES", "BOOL", "fp32"])),
        "shape": pick("input.shape", shape, shapes),
        "parameters": pick("input.parameters", {"binary_data_size": pick("input.binary_data_size", len(blob), sizes)} if binary else {}),
    }
    if not binary or "input.data" in broken:
        tensor["data"] = data
    output = {"name": pick("output.name", MODEL_OUTPUT, st.sampled_from(["", MODEL_INPUT])),
              "parameters": pick("output.parameters", {
                  "classification": pick("output.classification", draw(st.integers(1, 10)), st.sampled_from([0, 11, -1, True, 3.0, "3"])),
                  "binary_data": pick("output.binary_data", draw(st.booleans()), st.sampled_from([0, 1, "true"]))})}
    body = {
        "id": pick("id", draw(st.text(max_size=8)), deep_arrays, st.integers()),
        "inputs": pick("inputs", [tensor], st.just([]), st.just([tensor, tensor]), st.just(tensor), st.just([tensor, "extra"])),
        "outputs": pick("outputs", [output] if draw(st.booleans()) else ABSENT, st.just([]), st.just(output), st.just([output, output]),
                        st.just(MODEL_OUTPUT)),
        "parameters": pick("parameters", {"binary_data_output": draw(st.booleans())}, st.just({"binary_data_output": "no"})),
    }
    return pick("body", body, st.just([body])), blob if binary else b"", "header_length" in broken


@st.composite
def v2_requests(draw, binary: bool | None = None) -> tuple[bytes, str | None]:
    """(body, Inference-Header-Content-Length or None) of a v2 infer request, valid but for a few fields."""
    document, blob, broken_length = draw(v2_documents(binary))
    head = dumps(document)
    if not broken_length:
        return head + blob, str(len(head)) if blob else None
    wrong_lengths = [str(len(head) - 1), str(len(head) + 1), "0", "-1", " 1", "١٢", str(2**64)]
    return head + blob, draw(st.sampled_from(wrong_lengths) | st.text(max_size=4) | st.none())


def v2_json_bodies() -> st.SearchStrategy[object]:
    """v2 request bodies as Python values, for clients that serialise JSON themselves."""
    return v2_documents(binary=False).map(lambda parts: {} if parts[0] is ABSENT else _prune(parts[0]))
