"""Hot reload without dropped requests, invalid versions ignored, pinning, admin API, graceful stop."""
import os
import signal
import socket
import threading
import time

import numpy as np
import onnx
import pytest
import requests

import modelrepo
from tests.conftest import png_bytes
from service.testing import start_server
from tests.tiny_model import publish_tiny, tiny_metadata, tiny_onnx

IMAGE = png_bytes(np.full((28, 28), 200, dtype=np.uint8))
TOKEN = "s3cret-token"


def classify(url: str) -> tuple[int, str | None]:
    response = requests.post(f"{url}/v1/classify", data=IMAGE, headers={"Content-Type": "image/png"}, timeout=30)
    return response.status_code, response.json().get("model_version")


def wait_for_version(url: str, version: str, timeout: float = 20) -> None:
    """Until every worker serves `version` (10 answers in a row from it)."""
    deadline, streak = time.monotonic() + timeout, 0
    while streak < 10:
        assert time.monotonic() < deadline, f"not all workers moved to version {version}"
        streak = streak + 1 if classify(url)[1] == version else 0


def metric(url: str, line_start: str) -> float:
    lines = [line for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines() if line.startswith(line_start)]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_hot_swap_under_load_fails_no_request(tiny_repo, tmp_path):
    server = start_server(tiny_repo, tmp_path, RELOAD_POLL_SECONDS="0.5")
    results, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            results.append(classify(server.url))

    threads = [threading.Thread(target=load) for _ in range(6)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        publish_tiny(tiny_repo, seed=1)
        wait_for_version(server.url, "2")
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        server.stop()
    statuses = {status for status, _ in results}
    versions = {version for _, version in results}
    assert statuses == {200}, f"{sum(s != 200 for s, _ in results)} of {len(results)} requests failed"
    assert versions == {"1", "2"} and len(results) > 50


def _corrupt_onnx(repo):
    version_dir = modelrepo.version_dir(repo, "fashion-mnist", 2)
    version_dir.mkdir()
    (version_dir / "model.onnx").write_bytes(b"this is not a protobuf")
    meta = tiny_metadata().model_copy(update={"version": 2, "sha256": modelrepo.sha256_file(version_dir / "model.onnx")})
    (version_dir / "metadata.json").write_text(meta.model_dump_json())


def _wrong_shape(repo):
    # 5 outputs where the served version has 10: a different contract, refused at reload.
    publish_tiny(repo, model=tiny_onnx(classes=5))


def _missing_metadata(repo):
    publish_tiny(repo, seed=1)
    (modelrepo.version_dir(repo, "fashion-mnist", 2) / "metadata.json").unlink()


def _sha_mismatch(repo):
    publish_tiny(repo, seed=1)
    onnx.save(tiny_onnx(seed=5), modelrepo.version_dir(repo, "fashion-mnist", 2) / "model.onnx")


@pytest.mark.parametrize("break_it", [_corrupt_onnx, _wrong_shape, _missing_metadata, _sha_mismatch],
                         ids=["corrupt-onnx", "wrong-shape", "missing-metadata", "sha256-mismatch"])
def test_an_invalid_new_version_is_ignored(tiny_repo, tmp_path, break_it):
    server = start_server(tiny_repo, tmp_path, RELOAD_POLL_SECONDS="0.5")
    try:
        break_it(tiny_repo)
        deadline = time.monotonic() + 20
        while metric(server.url, "serving_model_load_failures_total") < 2:  # one per worker
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.3)
        time.sleep(2)  # several more polls: the failure is remembered, not retried
        assert metric(server.url, "serving_model_load_failures_total") == 2
        assert all(classify(server.url) == (200, "1") for _ in range(10))
        assert requests.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200
        index = requests.get(f"{server.url}/v2/repository/index", timeout=5).json()
        assert {"name": "fashion-mnist", "version": "2", "state": "UNAVAILABLE", "reason": "failed to load"} in index
    finally:
        server.stop()
    assert "not serving fashion-mnist/2" in server.output()


def test_pinning_serves_the_pinned_version(tiny_repo, tmp_path):
    publish_tiny(tiny_repo, seed=1)
    server = start_server(tiny_repo, tmp_path, MODEL_VERSION="1", RELOAD_POLL_SECONDS="0.5")
    try:
        publish_tiny(tiny_repo, seed=2)
        time.sleep(1.5)
        assert all(classify(server.url) == (200, "1") for _ in range(10))
        assert requests.get(f"{server.url}/v2/models/fashion-mnist/versions/3/ready", timeout=5).status_code == 404
    finally:
        server.stop()


def test_repository_api_needs_a_token_and_rolls_back(tiny_repo, tmp_path):
    publish_tiny(tiny_repo, seed=1)
    disabled = start_server(tiny_repo, tmp_path)
    try:
        assert requests.post(f"{disabled.url}/v2/repository/models/fashion-mnist/load", timeout=5).status_code == 403
    finally:
        disabled.stop()
    server = start_server(tiny_repo, tmp_path, ADMIN_TOKEN=TOKEN)
    url = f"{server.url}/v2/repository/models/fashion-mnist"
    try:
        assert classify(server.url) == (200, "2")
        assert requests.post(f"{url}/load", timeout=5).status_code == 401
        assert requests.post(f"{url}/load", headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        answer = requests.post(f"{url}/load", json={"parameters": {"version": "1"}}, headers=auth, timeout=30)
        assert answer.status_code == 200 and answer.json()["version"] == "1"
        wait_for_version(server.url, "1")  # every worker, not only the one that took the call
        assert requests.post(f"{server.url}/v2/repository/models/nope/load", headers=auth, timeout=5).status_code == 404
        assert requests.post(f"{url}/unload", headers=auth, timeout=5).status_code == 200
        time.sleep(1.5)
        assert requests.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 503
        assert classify(server.url)[0] == 503
        assert requests.post(f"{url}/load", headers=auth, timeout=30).json()["version"] == "2"  # follow the newest again
        wait_for_version(server.url, "2")
    finally:
        server.stop()


def test_sigterm_answers_every_connected_client_including_the_backlog(tiny_repo, tmp_path):
    server = start_server(tiny_repo, tmp_path, WEB_CONCURRENCY="1", THREADS="2")
    worker = int(os.popen(f"pgrep -P {server.process.pid}").read().split()[0])
    os.kill(worker, signal.SIGSTOP)  # the worker accepts nothing: new clients wait in the kernel's backlog
    port = int(server.url.rsplit(":", 1)[1])
    request = (f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {len(IMAGE)}\r\n"
               f"Connection: close\r\n\r\n").encode() + IMAGE
    clients = []
    for _ in range(20):
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        client.sendall(request)
        clients.append(client)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    os.kill(worker, signal.SIGCONT)
    answers = []
    for client in clients:
        data = b""
        try:
            while chunk := client.recv(65536):
                data += chunk
        except OSError as exc:
            data = repr(exc).encode()
        answers.append(data.split(b"\r\n", 1)[0])
        client.close()
    assert server.process.wait(30) == 0
    assert answers == [b"HTTP/1.1 200 OK"] * 20, answers
