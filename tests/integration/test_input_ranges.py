"""Input ranges: every shipped version declares [0, 1] and refuses anything else with a 400, and
a version from an old repository that declares none never answers a non-finite output with a 5xx."""
import json
import shutil

import pytest
import requests

import modelrepo
from tests.harness import start_server
from tests.tiny_model import publish_tiny

pytestmark = pytest.mark.slow  # a server a test: 13 s (range refusals are also tested in-process, tests/unit/test_app.py)


def _infer(url: str, name: str, value: float, version: str | None = None) -> requests.Response:
    body = {"inputs": [{"name": "images", "datatype": "FP32", "shape": [2, 28, 28, 1], "data": [value] * (2 * 784)}]}
    path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    return requests.post(f"{url}{path}", json=body, timeout=30)


@pytest.fixture(scope="module")
def first_versions(tmp_path_factory, bundled):
    """The service on the shipped versions 1 only (fashion-mnist/1 and fashion-mnist-int8/1)."""
    tmp = tmp_path_factory.mktemp("first")
    shutil.copytree(bundled, tmp / "models", ignore=shutil.ignore_patterns(".lock", ".reports", "2"))
    server = start_server(tmp / "models", tmp)
    yield server
    server.stop()


@pytest.mark.parametrize("name", ["fashion-mnist", "fashion-mnist-int8"])
@pytest.mark.parametrize("value", [3e38, 5.0, -0.5])
def test_the_shipped_versions_refuse_values_outside_0_1(first_versions, name, value):
    answer = _infer(first_versions.url, name, value, version="1")
    assert answer.status_code == 400, answer.text
    assert "[0, 1]" in answer.json()["error"]
    assert _infer(first_versions.url, name, 0.5, version="1").status_code == 200


def test_a_version_without_a_declared_range_answers_non_finite_outputs_with_a_400(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo)
    # Written as an old repository has it: no range (publishing requires one now). The sha256
    # is of model.onnx, so the version still verifies.
    path = modelrepo.version_dir(repo, "fashion-mnist", 1) / "metadata.json"
    metadata = json.loads(path.read_text())
    del metadata["inputs"][0]["range"]
    path.write_text(json.dumps(metadata))
    server = start_server(repo, tmp_path)
    try:
        answer = _infer(server.url, "fashion-mnist", 3e38)
        assert answer.status_code == 400, answer.text
        assert "non-finite" in answer.json()["error"] and "[3e+38, 3e+38]" in answer.json()["error"]
        assert _infer(server.url, "fashion-mnist", 5.0).status_code == 200  # finite: nothing to refuse it for
    finally:
        server.stop()
