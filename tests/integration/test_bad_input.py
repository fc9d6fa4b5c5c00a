"""Bad input: a clear 4xx JSON error every time, no stack trace, and the workers keep serving."""
import io
import json

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import png_bytes
from service.testing import start_server

INFER = "/v2/models/fashion-mnist/infer"
GOOD_IMAGE = png_bytes(np.zeros((28, 28), dtype=np.uint8))
NOISE_IMAGE = png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))


def _binary(values: np.ndarray):
    values = values.astype("<f4")
    header = json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28, 1],
                                     "parameters": {"binary_data_size": values.nbytes}}]}).encode()
    return {"data": header + values.astype("<f4").tobytes(),
            "headers": {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}}


def _v2(shape=(1, 28, 28, 1), datatype="FP32", name="images", data=None):
    count = int(np.prod(shape))
    return json.dumps({"inputs": [{"name": name, "datatype": datatype, "shape": list(shape),
                                   "data": data if data is not None else [0.5] * count}]})


def _bomb() -> bytes:
    # 12,000 × 12,000 pixels (144 MP) compress to a few hundred kB of PNG.
    buffer = io.BytesIO()
    Image.new("L", (12_000, 12_000)).save(buffer, format="PNG")
    return buffer.getvalue()


def _image(body: bytes, kind="image/png"):
    return {"data": body, "headers": {"Content-Type": kind}}


def _multipart(files):
    return {"files": [("image", f) for f in files]}


CASES = [
    # id, method path, request kwargs, expected status, words the error must contain
    ("not-an-image", "/v1/classify", _image(b"hello, I am text"), 400, "not an image"),
    ("truncated-png", "/v1/classify", _image(NOISE_IMAGE[: len(NOISE_IMAGE) * 2 // 3]), 400, "truncated"),
    ("empty-image", "/v1/classify", _image(b""), 400, "empty"),
    ("top-k-zero", "/v1/classify?top_k=0", _image(GOOD_IMAGE), 400, "top_k"),
    ("top-k-eleven", "/v1/classify?top_k=11", _image(GOOD_IMAGE), 400, "top_k"),
    ("top-k-word", "/v1/classify?top_k=many", _image(GOOD_IMAGE), 400, "top_k"),
    ("multipart-without-image", "/v1/classify", {"files": [("photo", ("a.png", GOOD_IMAGE))]}, 400, '"image"'),
    ("invalid-json", INFER, {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "invalid JSON"),
    ("no-inputs", INFER, {"json": {"outputs": []}}, 400, "inputs"),
    ("wrong-tensor-name", INFER, {"data": _v2(name="pixels")}, 400, "'images'"),
    ("wrong-shape", INFER, {"data": _v2(shape=(3, 28))}, 400, "FP32 ['N', 28, 28, 1], got FP32 [3, 28]"),
    ("wrong-datatype", INFER, {"data": _v2(datatype="INT64")}, 400, "got INT64"),
    ("nan-in-json", INFER, {"data": _v2(data=[float("nan")] * 784)}, 400, "invalid JSON"),  # NaN is not JSON
    ("nan-in-binary", INFER, _binary(np.full(784, np.nan)), 400, "NaN or Inf"),
    ("inf-in-binary", INFER, _binary(np.full(784, np.inf)), 400, "NaN or Inf"),
    ("infinity", INFER, {"data": _v2(data=[1e39] * 784)}, 400, "NaN or Inf"),
    ("length-mismatch", INFER, {"data": _v2(data=[0.5] * 700)}, 400, "700 values"),
    ("strings-as-data", INFER, {"data": _v2(data=["a"] * 784)}, 400, "numbers"),
    ("bad-header-length", INFER, {"data": _v2(), "headers": {"Inference-Header-Content-Length": "999999"}}, 400, "Inference-Header-Content-Length"),
    ("binary-size-mismatch", INFER, {"data": json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28, 1], "parameters": {"binary_data_size": 3136}}]}).encode() + b"\0" * 100,
                                      "headers": {"Inference-Header-Content-Length": str(len(json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28, 1], "parameters": {"binary_data_size": 3136}}]})))}}, 400, "binary_data_size"),
    ("unknown-output", INFER, {"data": json.dumps({"inputs": json.loads(_v2())["inputs"], "outputs": [{"name": "logits"}]})}, 400, "logits"),
    ("classification-out-of-range", INFER, {"data": json.dumps({"inputs": json.loads(_v2())["inputs"], "outputs": [{"name": "probabilities", "parameters": {"classification": 11}}]})}, 400, "classification"),
    ("decompression-bomb", "/v1/classify", _image(_bomb()), 413, "too large"),
    ("unknown-model", "/v2/models/no-such-model/infer", {"data": _v2()}, 404, "unknown model"),
    ("unknown-model-v1", "/v1/models/no-such-model/classify", _image(GOOD_IMAGE), 404, "unknown model"),
    ("path-traversal", "/v2/models/..%2F..%2Fetc%2Fpasswd/infer", {"data": _v2()}, 404, ""),
    ("unknown-version", "/v2/models/fashion-mnist/versions/99/infer", {"data": _v2()}, 404, "version"),
    ("body-too-large", INFER, {"data": b"0" * (2 * 1024 * 1024 + 1)}, 413, ""),
    ("too-many-images-v2", INFER, {"data": _v2(shape=(9, 28, 28, 1))}, 413, "MAX_BATCH_IMAGES"),
    ("too-many-images-v1", "/v1/classify", _multipart([("a.png", GOOD_IMAGE)] * 9), 413, "MAX_BATCH_IMAGES"),
    ("unsupported-type-v1", "/v1/classify", {"data": b"x", "headers": {"Content-Type": "text/plain"}}, 415, "content type"),
    ("unsupported-type-v2", INFER, {"data": b"x", "headers": {"Content-Type": "text/csv"}}, 415, "content type"),
]


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    """Small limits, so the oversize cases stay cheap: 2 MiB bodies, 8 images a request."""
    from tests.tiny_model import publish_tiny

    tmp = tmp_path_factory.mktemp("bad-input")
    publish_tiny(tmp / "models")
    srv = start_server(tmp / "models", tmp, MAX_REQUEST_BYTES=str(2 * 1024 * 1024), MAX_BATCH_IMAGES="8")
    yield srv
    srv.stop()


@pytest.mark.parametrize("path, kwargs, status, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_json_error(strict_server, path, kwargs, status, words):
    response = requests.post(strict_server.url + path, timeout=30, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and words in body["error"]
    assert "Traceback" not in response.text and 'File "' not in response.text


def test_the_service_still_serves_after_all_that(strict_server):
    # Runs after the parametrized cases (file order): every worker must still be alive and answering.
    for _ in range(8):
        response = requests.post(f"{strict_server.url}/v1/classify", data=GOOD_IMAGE, headers={"Content-Type": "image/png"}, timeout=10)
        assert response.status_code == 200 and response.json()["results"][0]["top_k"]
    assert "Worker exiting" not in strict_server.output() and "Booting worker" in strict_server.output()
    assert strict_server.output().count("Booting worker") == 2, "a worker died and was replaced"
