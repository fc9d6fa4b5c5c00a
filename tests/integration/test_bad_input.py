"""Bad input: a clear 4xx JSON error every time, no stack trace, and the workers keep serving."""
import io
import json

import numpy as np
import pytest
import requests
from PIL import Image

from tests.harness import start_server
from tests.tiny_model import publish_tiny

INFER = "/v2/models/fashion-mnist/infer"
LOAD = "/v2/repository/models/fashion-mnist/load"
TOKEN = "bad-input-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


GOOD_IMAGE = _encoded(Image.new("L", (28, 28)), "PNG")
NOISE_IMAGE = _encoded(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)), "PNG")
NOISE_RGB = Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))


def _binary(values: np.ndarray):
    values = values.astype("<f4")
    header = json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28, 1],
                                     "parameters": {"binary_data_size": values.nbytes}}]}).encode()
    return {"data": header + values.tobytes(),
            "headers": {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}}


def _input(shape=(1, 28, 28, 1), datatype="FP32", name="images", data=None, **extra):
    count = int(np.prod(shape))
    return {"name": name, "datatype": datatype, "shape": list(shape), "data": data if data is not None else [0.5] * count, **extra}


def _v2(**body):
    return {"data": json.dumps({"inputs": [_input()]} | body)}


def _bomb(size=12_000) -> bytes:
    # 12,000 × 12,000 pixels (144 MP) compress to a few hundred kB of PNG.
    return _encoded(Image.new("L", (size, size)), "PNG")


def _image(body: bytes, kind="image/png"):
    return {"data": body, "headers": {"Content-Type": kind}}


def _multipart(files):
    return {"files": [("image", f) for f in files]}


def _chunked(size: int):
    # A generator body makes requests send Transfer-Encoding: chunked, with no Content-Length.
    return {"data": (b"0" * 65536 for _ in range(size // 65536)), "headers": {"Content-Type": "image/png"}}


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


CASES = [
    # id, path, request kwargs, expected status, words the error must contain
    ("not-an-image", "/v1/classify", _image(b"hello, I am text"), 400, "not an image"),
    ("truncated-png", "/v1/classify", _image(NOISE_IMAGE[: len(NOISE_IMAGE) * 2 // 3]), 400, "truncated"),
    ("png-16-bytes", "/v1/classify", _image(NOISE_IMAGE[:16]), 400, "image 1"),
    ("jpeg-6-bytes", "/v1/classify", _image(_encoded(NOISE_RGB, "JPEG")[:6], "image/jpeg"), 400, "image 1"),
    ("webp-16-bytes", "/v1/classify", _image(_encoded(NOISE_RGB, "WEBP")[:16], "image/webp"), 400, "image 1"),
    ("empty-image", "/v1/classify", _image(b""), 400, "empty"),
    ("second-of-two-broken", "/v1/classify", _multipart([("a.png", GOOD_IMAGE), ("b.png", b"junk")]), 400, "image 2 (b.png)"),
    ("top-k-zero", "/v1/classify?top_k=0", _image(GOOD_IMAGE), 400, "top_k"),
    ("top-k-eleven", "/v1/classify?top_k=11", _image(GOOD_IMAGE), 400, "top_k"),
    ("top-k-word", "/v1/classify?top_k=many", _image(GOOD_IMAGE), 400, "top_k"),
    ("top-k-arabic-digit", "/v1/classify?top_k=%D9%A3", _image(GOOD_IMAGE), 400, "top_k"),
    ("top-k-superscript", "/v1/classify?top_k=%C2%B2", _image(GOOD_IMAGE), 400, "top_k"),
    ("explain-word", "/v1/classify?explain=perhaps", _image(GOOD_IMAGE), 400, "explain"),
    ("multipart-without-image", "/v1/classify", {"files": [("photo", ("a.png", GOOD_IMAGE))]}, 400, '"image"'),
    ("invalid-json", INFER, {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "invalid JSON"),
    ("no-inputs", INFER, {"json": {"outputs": []}}, 400, "inputs"),
    ("body-is-a-list", INFER, {"data": "[1, 2]"}, 400, "the body"),
    ("wrong-tensor-name", INFER, {"data": json.dumps({"inputs": [_input(name="pixels")]})}, 400, "'images'"),
    ("wrong-shape", INFER, {"data": json.dumps({"inputs": [_input(shape=(3, 28))]})}, 400, "FP32 ['N', 28, 28, 1], got FP32 [3, 28]"),
    ("wrong-datatype", INFER, {"data": json.dumps({"inputs": [_input(datatype="INT64")]})}, 400, "got INT64"),
    ("shape-of-strings", INFER, {"data": json.dumps({"inputs": [_input() | {"shape": ["1", 28, 28, 1]}]})}, 400, "inputs.0.shape.0"),
    ("nan-in-json", INFER, {"data": json.dumps({"inputs": [_input(data=[float("nan")] * 784)]})}, 400, "invalid JSON"),
    ("nan-in-binary", INFER, _binary(np.full(784, np.nan)), 400, "NaN or Inf"),
    ("inf-in-binary", INFER, _binary(np.full(784, np.inf)), 400, "NaN or Inf"),
    ("above-range-json", INFER, {"data": json.dumps({"inputs": [_input(data=[1e39] * 784)]})}, 400, "must lie in [0, 1]"),
    ("3e38-in-binary", INFER, _binary(np.full(784, 3e38)), 400, "must lie in [0, 1]"),
    ("negative-pixels", INFER, _binary(np.full(784, -0.5)), 400, "must lie in [0, 1]"),
    ("length-mismatch", INFER, {"data": json.dumps({"inputs": [_input(data=[0.5] * 700)]})}, 400, "700 values"),
    ("strings-as-data", INFER, {"data": json.dumps({"inputs": [_input(data=["0.5"] * 784)]})}, 400, "numbers"),
    ("booleans-as-data", INFER, {"data": json.dumps({"inputs": [_input(data=[True] * 784)]})}, 400, "numbers"),
    ("ragged-data", INFER, {"data": json.dumps({"inputs": [_input(data=[[0.5] * 28] * 27 + [[0.5] * 29])]})}, 400, "nested"),
    ("parameters-not-an-object", INFER, _v2(parameters=[1]), 400, "parameters"),
    ("input-parameters-not-an-object", INFER, {"data": json.dumps({"inputs": [_input(parameters="binary")]})}, 400, "inputs.0.parameters"),
    ("output-parameters-not-an-object", INFER, _v2(outputs=[{"name": "probabilities", "parameters": 7}]), 400, "outputs.0.parameters"),
    ("parameter-value-an-object", INFER, _v2(parameters={"priority": {"a": 1}}), 400, "parameters.priority"),
    ("outputs-not-a-list", INFER, _v2(outputs={"name": "probabilities"}), 400, "outputs"),
    ("id-a-number", INFER, _v2(id=42), 400, "id"),
    ("id-deeply-nested", INFER, {"data": '{"inputs": ' + json.dumps([_input()]) + ', "id": ' + _nested(300) + "}"}, 400, "nested"),
    ("unknown-field", INFER, _v2(ouputs=[]), 400, "ouputs"),
    ("bad-header-length", INFER, {"data": json.dumps({"inputs": [_input()]}), "headers": {"Inference-Header-Content-Length": "999999"}}, 400, "Inference-Header-Content-Length"),
    ("header-length-arabic", INFER, {"data": json.dumps({"inputs": [_input()]}).encode(), "headers": {"Inference-Header-Content-Length": "٣".encode()}}, 400, "Inference-Header-Content-Length"),
    ("binary-size-mismatch", INFER, {"data": json.dumps({"inputs": [_input(data=None) | {"data": None, "parameters": {"binary_data_size": 3136}}]}).encode() + b"\0" * 100,
                                      "headers": {"Inference-Header-Content-Length": str(len(json.dumps({"inputs": [_input(data=None) | {"data": None, "parameters": {"binary_data_size": 3136}}]})))}}, 400, "binary_data_size"),
    ("unknown-output", INFER, _v2(outputs=[{"name": "logits"}]), 400, "logits"),
    ("classification-out-of-range", INFER, _v2(outputs=[{"name": "probabilities", "parameters": {"classification": 11}}]), 400, "classification"),
    ("classification-a-string", INFER, _v2(outputs=[{"name": "probabilities", "parameters": {"classification": "3"}}]), 400, "classification"),
    ("decompression-bomb", "/v1/classify", _image(_bomb()), 413, "MAX_IMAGE_PIXELS"),
    ("request-pixel-budget", "/v1/classify", _multipart([(f"{i}.png", _bomb(1000)) for i in range(3)]), 413, "MAX_REQUEST_PIXELS"),
    ("unknown-model", "/v2/models/no-such-model/infer", _v2(), 404, "unknown model"),
    ("unknown-model-v1", "/v1/models/no-such-model/classify", _image(GOOD_IMAGE), 404, "unknown model"),
    ("path-traversal", "/v2/models/..%2F..%2Fetc%2Fpasswd/infer", _v2(), 404, ""),
    ("encoded-double-slash", "/v2/models/a%2F%2Fb/infer", _v2(), 404, ""),
    ("encoded-trailing-slash", "/v2/models/fashion-mnist%2F/infer", _v2(), 404, "not found"),  # was an HTML 308
    ("encoded-slash-as-name", "/v2/models/%2F/infer", _v2(), 404, "not found"),
    ("unknown-version", "/v2/models/fashion-mnist/versions/99/infer", _v2(), 404, "version"),
    ("body-too-large", INFER, {"data": b"0" * (2 * 1024 * 1024 + 1)}, 413, ""),
    ("chunked-body-too-large", "/v1/classify", _chunked(9 * 1024 * 1024), 413, ""),
    ("too-many-images-v2", INFER, {"data": json.dumps({"inputs": [_input(shape=(9, 28, 28, 1))]})}, 413, "MAX_BATCH_IMAGES"),
    ("too-many-images-v1", "/v1/classify", _multipart([("a.png", GOOD_IMAGE)] * 9), 413, "MAX_BATCH_IMAGES"),
    ("unsupported-type-v1", "/v1/classify", {"data": b"x", "headers": {"Content-Type": "text/plain"}}, 415, "content type"),
    ("unsupported-type-v2", INFER, {"data": b"x", "headers": {"Content-Type": "text/csv"}}, 415, "content type"),
    ("admin-body-a-list", LOAD, {"data": "[1]", "headers": AUTH | {"Content-Type": "application/json"}}, 400, "the body"),
    ("admin-parameters-a-string", LOAD, {"json": {"parameters": "1"}, "headers": AUTH}, 400, "parameters"),
    ("admin-version-an-object", LOAD, {"json": {"parameters": {"version": {"v": 1}}}, "headers": AUTH}, 400, "parameters.version"),
    ("admin-version-a-word", LOAD, {"json": {"parameters": {"version": "latest"}}, "headers": AUTH}, 400, "version number"),
    ("admin-version-absent", LOAD, {"json": {"parameters": {"version": "99"}}, "headers": AUTH}, 404, "no version 99"),
    ("admin-form-body", LOAD, {"data": '{"parameters": {"version": "1"}}', "headers": AUTH | {"Content-Type": "application/x-www-form-urlencoded"}}, 415, "application/json"),
    ("admin-deeply-nested", LOAD, {"data": _nested(100), "headers": AUTH | {"Content-Type": "application/json"}}, 400, "nested"),
]
METHOD_CASES = [
    # A 405 says which methods the path takes, as RFC 9110 requires.
    ("GET", INFER, 405, "POST"),
    ("DELETE", "/v2/health/live", 405, "GET"),
    ("GET", "/no/such/path", 404, None),
    ("GET", "/v2/models/a%2F/ready", 404, None),  # was an HTML redirect
]


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    """Small limits, so the oversize cases stay cheap: 2 MiB bodies, 8 images and 2 MP a request."""
    tmp = tmp_path_factory.mktemp("bad-input")
    publish_tiny(tmp / "models")
    srv = start_server(tmp / "models", tmp, MAX_REQUEST_BYTES=str(2 * 1024 * 1024), MAX_BATCH_IMAGES="8",
                       MAX_IMAGE_PIXELS="1000000", MAX_REQUEST_PIXELS="2000000", ADMIN_TOKEN=TOKEN)
    yield srv
    srv.stop()


def _send(server, path, kwargs):
    return requests.post(server.url + path, timeout=30, **kwargs)


def _assert_clear_json_error(response, status, words):
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and words in body["error"], body
    assert "Traceback" not in response.text and 'File "' not in response.text


@pytest.mark.parametrize("path, kwargs, status, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_json_error(strict_server, path, kwargs, status, words):
    _assert_clear_json_error(_send(strict_server, path, kwargs), status, words)


@pytest.mark.parametrize("method, path, status, allow", METHOD_CASES, ids=[f"{m} {p}" for m, p, _, _ in METHOD_CASES])
def test_wrong_methods_and_paths_get_json_errors(strict_server, method, path, status, allow):
    response = requests.request(method, strict_server.url + path, timeout=10)
    _assert_clear_json_error(response, status, "")
    if allow:
        assert allow in response.headers["Allow"]


def test_the_workers_survive_every_bad_request(strict_server):
    # Sends every case itself, so it holds whichever tests ran before it.
    for _, path, kwargs, _, _ in CASES:
        assert _send(strict_server, path, kwargs).status_code < 500
    for _ in range(8):
        response = requests.post(f"{strict_server.url}/v1/classify", data=GOOD_IMAGE, headers={"Content-Type": "image/png"}, timeout=10)
        assert response.status_code == 200 and response.json()["results"][0]["top_k"]
    log = strict_server.output()
    assert log.count("Booting worker") == 2, "a worker died and was replaced"
    assert "Traceback" not in log, log[-3000:]
