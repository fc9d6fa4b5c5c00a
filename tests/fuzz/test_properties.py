"""Hypothesis, in-process: whatever a client sends, a decoder answers with a result or one of our 4xx errors.

Any other exception, or a ServingError with a 5xx status, is a bug: the service would answer 500
and page the operator. The adapter below is the only code that names service internals, so a
rewrite of the decoders changes it alone. Examples are derandomized: every run tries the same
inputs, and a failure found in CI reproduces locally.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service import images, tensors
from service.errors import ServingError
from service.routes import classify
from service.runtime import ModelRuntime
from service.settings import Settings
from tests.fuzz.strategies import image_bytes, random_bytes, v2_requests
from tests.tiny_model import publish_tiny

pytestmark = pytest.mark.slow  # fuzzing (hypothesis): 10-20 s

# -- adapter: one function per decoder -----------------------------------------------------------
_DEFAULTS = Settings()
MAX_IMAGES = _DEFAULTS.max_batch_images
_DECODER = images.Decoder(_DEFAULTS.max_image_pixels, _DEFAULTS.max_request_pixels)
_REQUESTS = Flask(__name__)  # only for a request context: the query string parser reads flask.request


def decode_image(data: bytes) -> np.ndarray:
    """An uploaded file → the model's input, float32 [28, 28, 1]."""
    return _DECODER.decode([(None, data)], (28, 28))[0]


def parse_top_k(raw: str) -> int:
    """/v1's top_k query parameter → k."""
    with _REQUESTS.test_request_context(query_string={"top_k": raw}):
        return classify._top_k()


def load_model(repository: Path) -> ModelRuntime:
    """The tiny model, loaded as the service loads it."""
    return ModelRuntime.load(repository, "fashion-mnist", 1, ["CPUExecutionProvider"], threads=1)


def infer_v2(body: bytes, header_length: str | None, model: ModelRuntime) -> tuple[dict, bytes]:
    """A v2 infer request → (the response's JSON part, parsed back, and its binary part), as the route builds them."""
    request, blobs = tensors.parse_request(body, header_length)
    batch = tensors.input_tensor(request, blobs, model.inputs[0], MAX_IMAGES)
    outputs = tensors.requested_outputs(request, model.outputs[0], model.metadata.labels)
    probabilities = model.run(batch)
    head = {"model_name": model.name, "model_version": str(model.version)} | ({"id": request.id} if request.id is not None else {})
    payload, json_length = tensors.encode_response(head, outputs, probabilities, model.metadata.labels)
    json_part, blob = (payload[:json_length], payload[json_length:]) if json_length else (payload, b"")
    return orjson.loads(json_part), blob


# -- properties ----------------------------------------------------------------------------------
FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])


def _client_error(exc: ServingError) -> None:
    assert 400 <= exc.status < 500, f"{type(exc).__name__} is a {exc.status}: {exc}"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> ModelRuntime:
    repository = tmp_path_factory.mktemp("fuzz") / "models"
    publish_tiny(repository)
    return load_model(repository)


def _check_image(data: bytes) -> None:
    try:
        tensor = decode_image(data)
    except ServingError as exc:
        _client_error(exc)
        return
    assert tensor.shape == (28, 28, 1) and tensor.dtype == np.float32
    assert np.isfinite(tensor).all() and 0.0 <= tensor.min() and tensor.max() <= 1.0


@settings(FUZZ, max_examples=1000)
@given(image_bytes())
def test_images_valid_damaged_or_noise_decode_or_get_a_4xx(data: bytes):
    _check_image(data)


@settings(FUZZ, max_examples=500)
@given(random_bytes())
def test_random_bytes_get_a_4xx(data: bytes):
    _check_image(data)


@settings(FUZZ, max_examples=200)
@given(st.integers(-20, 30).map(str) | st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=3) | st.text(max_size=6))
def test_top_k_is_an_integer_in_range_or_a_4xx(raw: str):
    try:
        k = parse_top_k(raw)
    except ServingError as exc:
        _client_error(exc)
        return
    assert 1 <= k <= 10


def _valid_response(response: dict, blob: bytes) -> None:
    """A 200 echoes the id as a string (OIP), and never carries a non-finite probability: in JSON, strings or binary."""
    assert isinstance(response.get("id", ""), str), response["id"]
    offset = 0
    for out in response["outputs"]:
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if out["datatype"] == "FP32":
                assert np.isfinite(np.frombuffer(blob[offset:offset + size], dtype="<f4")).all(), out
            offset += size
        elif out["datatype"] == "FP32":
            assert all(isinstance(p, float) and math.isfinite(p) for p in out["data"]), out
        else:
            assert all(math.isfinite(float(entry.split(":")[0])) for entry in out["data"]), out


@settings(FUZZ, max_examples=600)
@given(v2_requests())
def test_v2_bodies_infer_or_get_a_4xx(model: ModelRuntime, request_parts: tuple[bytes, str | None]):
    body, header_length = request_parts
    try:
        response, blob = infer_v2(body, header_length, model)
    except ServingError as exc:
        _client_error(exc)
        return
    _valid_response(response, blob)
