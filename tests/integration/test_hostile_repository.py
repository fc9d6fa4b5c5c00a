"""A model repository that fights back: files that are not files, and a scan that never ends.

The server must keep polling, load the next valid version, answer its admin API and its
liveness probe, and boot whatever the repository holds.
"""
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import onnx
import pytest
import requests
from onnx import TensorProto, helper, numpy_helper

import modelrepo
from tests.harness import start_server
from tests.tiny_model import publish_tiny

pytestmark = pytest.mark.slow  # waits out stuck scans: 30 s

NAME = "fashion-mnist"
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCANS, TIMEOUTS = "serving_repository_scans_total", "serving_repository_scan_timeouts_total"


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _socket(path: Path) -> None:
    path.unlink()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.close()


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


HOSTILE = {
    "metadata-is-a-fifo": ("metadata.json", _fifo),
    "model-is-a-fifo": ("model.onnx", _fifo),
    "metadata-is-a-socket": ("metadata.json", _socket),
    "model-is-a-folder": ("model.onnx", _folder),
}


def _add_hostile_version(repo: Path, kind: str, name: str = NAME) -> int:
    """The next version of `name`, a copy of version 1 but for one file that is not a regular file.

    Built aside and renamed in, so that no server ever sees it whole."""
    version = modelrepo.newest_version(repo, name) + 1
    aside = repo.parent / f"aside-{name}-{version}"
    shutil.copytree(modelrepo.version_dir(repo, name, 1), aside)
    metadata = json.loads((aside / "metadata.json").read_text())
    (aside / "metadata.json").write_text(json.dumps(metadata | {"version": version}))
    filename, spoil = HOSTILE[kind]
    spoil(aside / filename)
    os.rename(aside, modelrepo.version_dir(repo, name, version))
    return version


def _ready(url: str) -> bool:
    return requests.get(f"{url}/v2/health/ready", timeout=10).status_code == 200


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_file_that_is_not_a_file_never_stops_the_poller(tiny_repo, tmp_path, kind, metric, wait_for_version, eventually):
    server = start_server(tiny_repo, tmp_path, RELOAD_POLL_SECONDS="0.3", ADMIN_TOKEN=TOKEN)
    try:
        hostile = _add_hostile_version(tiny_repo, kind)
        eventually(lambda: metric(server.url, "serving_model_load_failures_total") >= 2, what="both workers fail it")
        publish_tiny(tiny_repo, seed=7)  # a valid newer version: it must still be found
        wait_for_version(server.url, "3")
        scans = metric(server.url, SCANS)
        eventually(lambda: metric(server.url, SCANS) >= scans + 4, what="scans go on")
        # An operator asking for the hostile version gets an answer (a hang would raise here).
        answer = requests.post(f"{server.url}/v2/repository/models/{NAME}/load", json={"parameters": {"version": str(hostile)}},
                               headers=AUTH, timeout=15)
        assert answer.status_code == 400 and "cannot load" in answer.json()["error"]
        assert f"not serving {NAME}/{hostile}" in server.output()
        assert metric(server.url, TIMEOUTS) == 0
    finally:
        server.stop()


def test_a_fresh_start_on_hostile_files_boots_every_worker(tiny_repo, tmp_path, classify, eventually):
    _add_hostile_version(tiny_repo, "metadata-is-a-fifo")
    publish_tiny(tiny_repo, name="other")
    _add_hostile_version(tiny_repo, "model-is-a-fifo", name="other")
    server = start_server(tiny_repo, tmp_path)  # waits for every worker to boot and the service to be ready
    try:
        assert requests.get(f"{server.url}/v2/health/live", timeout=10).status_code == 200
        assert all(classify(server.url) == (200, "1") for _ in range(10))
        assert requests.get(f"{server.url}/v2/models/other/versions/1/ready", timeout=10).status_code == 200
        # A worker that dies is replaced by one that boots too.
        victim = server.workers()[0]
        os.kill(victim, 9)
        eventually(lambda: server.replaced(victim), timeout=60, what="a replacement worker")
    finally:
        server.stop()


def _endless_warm_up(iterations: int = 25_000_000) -> onnx.ModelProto:
    """The production contract, but the graph loops `iterations` times (~17 s on a 2-core EPYC)
    and then divides by zero: a version whose warm-up outlives any scan timeout, then fails."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["x_in"], ["x_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("x_out", TensorProto.FLOAT, None)])
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Constant", [], ["trips"], value=helper.make_tensor("t", TensorProto.INT64, [], [iterations])),
        helper.make_node("Constant", [], ["go"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True])),
        helper.make_node("Loop", ["trips", "go", "images"], ["looped"], body=body),
        helper.make_node("Div", ["looped", "zero"], ["nan"]),
        helper.make_node("Flatten", ["nan"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "endless",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 28, 28, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=[numpy_helper.from_array(np.zeros((), np.float32), "zero"),
                     numpy_helper.from_array(rng.normal(0, 0.5, (784, 10)).astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_a_stuck_scan_is_abandoned_and_the_worker_boots_without_it(tiny_repo, tmp_path, metric, classify, eventually):
    publish_tiny(tiny_repo, seed=1, model=_endless_warm_up())  # version 2: the newest, tried first
    # One worker, one onnxruntime thread: the endless warm-up takes one core, not the machine.
    server = start_server(tiny_repo, tmp_path, wait_ready=False, WEB_CONCURRENCY="1", INTRA_OP_THREADS="1",
                          REPOSITORY_SCAN_TIMEOUT="1", ADMIN_TOKEN=TOKEN)
    try:
        eventually(server.booted, timeout=60, what="the worker boots while its first scan is stuck")
        assert requests.get(f"{server.url}/v2/health/live", timeout=10).status_code == 200
        eventually(lambda: metric(server.url, TIMEOUTS) >= 1, what="the stuck scan counted")
        assert "REPOSITORY_SCAN_TIMEOUT" in server.output()
        # An operator call never waits behind the stuck scan for longer than the timeout.
        answer = requests.post(f"{server.url}/v2/repository/models/{NAME}/load", json={"parameters": {"version": "1"}},
                               headers=AUTH, timeout=15)
        assert answer.status_code in (200, 503), answer.text  # 200 only if the scan ended meanwhile
        # When the scan ends, the endless version has failed and the valid one serves.
        eventually(lambda: _ready(server.url), timeout=180, what="ready once the stuck scan ended")
        assert classify(server.url) == (200, "1")
        assert "not serving fashion-mnist/2" in server.output()
    finally:
        server.stop()
