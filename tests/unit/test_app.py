"""The app in-process through Flask's test client: routes, decoding and the error mapping, no gunicorn."""
from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

import modelrepo
from tests.tiny_model import publish_tiny


def _png(height: int, width: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width), 200, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("size", [(28, 28), (32, 20)])
def test_v1_decodes_to_the_models_declared_input_shape(make_app, tmp_path: Path, size: tuple[int, int]):
    repository = tmp_path / "models"
    publish_tiny(repository, size=size)
    client = make_app(repository).test_client()
    response = client.post("/v1/classify?explain=1", data=_png(100, 60), content_type="image/png")
    assert response.status_code == 200, response.json
    view = Image.open(io.BytesIO(base64.b64decode(response.json["results"][0]["preprocessed_png"])))
    assert view.size == (size[1], size[0])  # Pillow: width × height


def test_errors_are_json_from_one_place(make_app, tiny_repo: Path):
    client = make_app(tiny_repo).test_client()
    missing = client.get("/v1/nowhere")
    assert missing.status_code == 404 and "error" in missing.json
    wrong_method = client.get("/v1/classify")
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"] and "error" in wrong_method.json
    unknown_model = client.post("/v1/models/nope/classify", data=_png(28, 28), content_type="image/png")
    assert unknown_model.status_code == 404 and "nope" in unknown_model.json["error"]
    not_an_image = client.post("/v1/classify", data=b"not an image", content_type="image/png")
    assert not_an_image.status_code == 400 and "image 1" in not_an_image.json["error"]


def test_metrics_count_requests_by_api_and_model(make_app, tiny_repo: Path):
    client = make_app(tiny_repo).test_client()
    assert client.post("/v1/classify", data=_png(28, 28), content_type="image/png").status_code == 200
    text = client.get("/metrics").get_data(as_text=True)
    assert 'serving_requests_total{api="v1",model="fashion-mnist",status="200"}' in text
    assert 'serving_decode_refusals_total{reason="crash"}' in text


def test_v2_infer_answers_what_onnxruntime_answers(make_app, tiny_repo: Path):
    client = make_app(tiny_repo).test_client()
    images = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    body = {"inputs": [{"name": "images", "datatype": "FP32", "shape": [3, 28, 28, 1], "data": images.ravel().tolist()}]}
    response = client.post("/v2/models/fashion-mnist/infer", json=body)
    assert response.status_code == 200, response.json
    [output] = response.json["outputs"]
    assert output["name"] == "probabilities" and output["shape"] == [3, 10]
    session = ort.InferenceSession(str(modelrepo.version_dir(tiny_repo, "fashion-mnist", 1) / modelrepo.MODEL_FILE))
    expected = session.run(None, {"images": images})[0]
    np.testing.assert_allclose(np.array(output["data"]).reshape(3, 10), expected, rtol=1e-5, atol=1e-6)
    assert client.get("/v2/models/fashion-mnist").json["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28, 1]}]
    assert client.get("/v2/health/ready").status_code == 200


def test_the_repository_api_needs_its_token_then_unloads_and_loads(make_app, tiny_repo: Path):
    assert make_app(tiny_repo).test_client().post("/v2/repository/models/fashion-mnist/unload").status_code == 403
    client = make_app(tiny_repo, admin_token="secret").test_client()
    assert client.post("/v2/repository/models/fashion-mnist/unload").status_code == 401
    operator = {"Authorization": "Bearer secret"}
    assert client.post("/v2/repository/models/fashion-mnist/unload", headers=operator).json["state"] == "UNAVAILABLE"
    assert client.get("/v2/health/ready").status_code == 503
    loaded = client.post("/v2/repository/models/fashion-mnist/load", headers=operator, json={"parameters": {"version": 1}})
    assert loaded.status_code == 200 and loaded.json == {"name": "fashion-mnist", "version": "1", "state": "READY"}
    assert client.get("/v2/health/ready").status_code == 200
    assert client.post("/v2/repository/models/fashion-mnist/load", headers=operator, data="x", content_type="text/plain").status_code == 415


@pytest.mark.parametrize("value", [3e38, 5.0, -0.5])
def test_v2_refuses_values_outside_the_declared_range(make_app, tiny_repo: Path, value: float):
    client = make_app(tiny_repo).test_client()
    body = {"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28, 1], "data": [value] * 784}]}
    refused = client.post("/v2/models/fashion-mnist/infer", json=body)
    assert refused.status_code == 400 and "[0, 1]" in refused.json["error"]
    body["inputs"][0]["data"] = [0.5] * 784
    assert client.post("/v2/models/fashion-mnist/infer", json=body).status_code == 200
