"""The Open Inference Protocol v2, driven by the reference client (tritonclient.http)."""
import numpy as np
import onnxruntime as ort
import pytest
import requests
import tritonclient.http as triton

import modelrepo

MODEL = "fashion-mnist"


@pytest.fixture(scope="module")
def client(bundled_server):
    return triton.InferenceServerClient(bundled_server.url.removeprefix("http://"))


@pytest.fixture(scope="module")
def reference(bundled_server, bundled, test_split):
    """Direct onnxruntime output of the same model file on the first 32 test images."""
    # The service serves a byte-identical copy (it checks the sha256 recorded in metadata.json).
    version = modelrepo.newest_version(bundled, MODEL)
    path = modelrepo.version_dir(bundled, MODEL, version) / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = test_split.images[:32]
    return images, session.run(None, {"images": images})[0], str(version)


def test_health_and_metadata(client, reference):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    meta = client.get_model_metadata(MODEL)
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28, 1]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert reference[2] in meta["versions"]
    assert "classification" in client.get_server_metadata()["extensions"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_matches_onnxruntime(client, reference, binary):
    images, expected, version = reference
    inp = triton.InferInput("images", list(images.shape), "FP32")
    inp.set_data_from_numpy(images, binary_data=binary)
    out = triton.InferRequestedOutput("probabilities", binary_data=binary)
    result = client.infer(MODEL, [inp], outputs=[out], request_id="req-42")
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-5, atol=1e-6)
    response = result.get_response()
    assert response["model_version"] == version and response["id"] == "req-42"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_classification_extension(client, reference, binary):
    images, expected, _ = reference
    inp = triton.InferInput("images", list(images.shape), "FP32")
    inp.set_data_from_numpy(images, binary_data=binary)
    out = triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=3)
    rows = client.infer(MODEL, [inp], outputs=[out]).as_numpy("probabilities")
    assert rows.shape == (32, 3)
    for row, probs in zip(rows, expected):
        first = row[0].decode() if isinstance(row[0], bytes) else row[0]  # bytes from binary, str from JSON
        prob, index, label = first.split(":")
        assert int(index) == probs.argmax() and abs(float(prob) - probs.max()) < 1e-5 and label


def test_versioned_routes(bundled_server, reference):
    _, _, version = reference
    url = f"{bundled_server.url}/v2/models/{MODEL}/versions/{version}"
    assert requests.get(f"{url}/ready", timeout=10).json() == {"name": MODEL, "ready": True}
    assert requests.get(f"{bundled_server.url}/v2/models/{MODEL}/versions/999/ready", timeout=10).status_code == 404


def test_nested_data_is_accepted(bundled_server, reference):
    images, expected, _ = reference
    body = {"inputs": [{"name": "images", "datatype": "FP32", "shape": [2, 28, 28, 1], "data": images[:2].tolist()}]}
    got = requests.post(f"{bundled_server.url}/v2/models/{MODEL}/infer", json=body, timeout=10).json()
    np.testing.assert_allclose(np.array(got["outputs"][0]["data"]).reshape(2, 10), expected[:2], rtol=1e-5, atol=1e-6)
