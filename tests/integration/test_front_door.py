"""The front door against hostile bytes, on the real worker: every framing lie and every limit is a
counted JSON 4xx, no request spins or holds a worker, TLS works, and settings the worker would
ignore are refused. The worker runs on the pinned gunicorn and on the oldest release we support."""
import ast
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import orjson
import pytest
import requests

from tests.harness import ROOT, free_port, start_server
from tests.hostile_http import LYING_CHUNK_SIZES, MALFORMED, OVER_LIMITS, REGEX_HOSTILE_JSON, chunked_with_size
from tests.sockets import read_until_closed

READ_TIMEOUT = 3.0
OLDEST_GUNICORN = ROOT / ".venv" / "gunicorn-oldest"  # gunicorn 23.0.0, installed by scripts/setup.sh test
PATHS = [b"/v1/classify", b"/v2/models/fashion-mnist/infer", b"/v2/repository/models/fashion-mnist/load"]


@pytest.fixture(scope="module", params=["pinned", "oldest"], ids=["gunicorn-27.0.1", "gunicorn-23.0.0"])
def door(request, tmp_path_factory):
    """One worker with 8 threads, on the pinned gunicorn or the oldest supported one."""
    from tests.tiny_model import publish_tiny

    tmp = tmp_path_factory.mktemp("door")
    publish_tiny(tmp / "models")
    env = {"WEB_CONCURRENCY": "1", "THREADS": "8", "REQUEST_READ_TIMEOUT": str(READ_TIMEOUT), "ADMIN_TOKEN": "t"}
    if request.param == "oldest":
        assert (OLDEST_GUNICORN / "gunicorn").is_dir(), f"{OLDEST_GUNICORN} is missing: run scripts/setup.sh test"
        env["PYTHONPATH"] = os.pathsep.join([str(OLDEST_GUNICORN), str(ROOT)])
    server = start_server(tmp / "models", tmp, **env)
    assert ("gunicorn 23.0.0" in server.output()) == (request.param == "oldest")
    yield server
    server.stop()


def exchange(port: int, data: bytes, timeout: float = READ_TIMEOUT + 10) -> bytes:
    """Send raw bytes, then read until the server closes; a server that hangs fails the test."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return read_until_closed(s)


def statuses(answer: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


def assert_json_error(answer: bytes, status: int) -> None:
    head, _, body = answer.rpartition(b"\r\n\r\n")
    assert statuses(answer)[-1] == status, answer[:300]
    assert b"Content-Type: application/json" in head.rsplit(b"HTTP/1.1 ", 1)[-1], answer[:300]
    assert isinstance(orjson.loads(body)["error"], str)


def healthy(url: str) -> bool:
    return requests.get(f"{url}/v2/health/live", timeout=5).status_code == 200


@pytest.mark.parametrize("path", PATHS, ids=["v1", "v2", "admin"])
@pytest.mark.parametrize("size", LYING_CHUNK_SIZES, ids=lambda s: repr(s)[2:-1] or "empty")
def test_a_lying_chunk_size_gets_400_first_or_pipelined_and_spins_nothing(door, path, size):
    lie = chunked_with_size(size, path)
    assert_json_error(exchange(door.port, lie), 400)
    pipelined = exchange(door.port, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n" + lie)
    assert statuses(pipelined) == [200, 400]
    assert healthy(door.url)


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_framing_gets_a_json_400(door, name):
    assert_json_error(exchange(door.port, MALFORMED[name]), 400)


@pytest.mark.parametrize("name", OVER_LIMITS)
def test_every_refusal_of_the_http_layer_is_counted_json(door, name, metric):
    request, status = OVER_LIMITS[name]
    series = f'serving_requests_total{{api="other",model="unknown",status="{status}"}}'
    before = metric(door.url, series)
    assert_json_error(exchange(door.port, request), status)
    assert metric(door.url, series) == before + 1


@pytest.mark.parametrize("name", REGEX_HOSTILE_JSON)
def test_regex_hostile_json_is_answered_and_health_never_waits(door, name):
    body = REGEX_HOSTILE_JSON[name]
    answer = exchange(door.port, b"POST /v2/models/fashion-mnist/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert_json_error(answer, 400)
    assert healthy(door.url)


def test_an_endless_chunk_size_line_is_refused_not_buffered(door):
    """The last framer buffered one size line of 66 MiB, then answered 500."""
    with socket.create_connection(("127.0.0.1", door.port), timeout=READ_TIMEOUT + 10) as s:
        s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;")
        sent, line = 0, b"e" * 65536
        try:
            while sent < 200 * 1024 * 1024:
                s.sendall(line)
                sent += len(line)
        except OSError:
            pass  # the server stopped reading us: it answered and closed
        answer = read_until_closed(s)
    assert statuses(answer)[-1] in (400, 413), answer[:200]
    assert healthy(door.url)


def test_a_pipelined_flood_is_answered_in_order(door):
    flood = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n" * 2000 + b"GET /v2 HTTP/1.1\r\nConnection: close\r\n\r\n"
    answer = exchange(door.port, flood)
    assert statuses(answer) == [200] * 2001 and answer.endswith(b'"binary_tensor_data"]}')


def test_after_every_attack_the_worker_holds_no_request_bytes(door, metric, eventually):
    """The budget's count returns to zero: a leak would starve every large upload of the worker."""
    eventually(lambda: metric(door.url, "serving_http_held_bytes") == 0, timeout=READ_TIMEOUT + 5, what="held bytes back to 0")


def test_the_worker_uses_only_documented_gunicorn_interfaces():
    """gunicorn.workers.base.Worker and settings: no gthread or parser internals that a release can change."""
    imported = set()
    for path in (ROOT / "service").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gunicorn"):
                imported |= {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name.startswith("gunicorn")}
    assert imported == {"gunicorn.workers.base.Worker"}


# -- TLS and settings the worker does not honour ---------------------------------------------------
@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.mark.slow  # starts its own TLS server: 8 s
def test_tls_serves_https_and_a_plain_client_is_closed(tiny_repo, tmp_path, certificate, png):
    import numpy as np

    cert, key = certificate
    server = start_server(tiny_repo, tmp_path, wait_ready=False, WEB_CONCURRENCY="1",
                          REQUEST_READ_TIMEOUT=str(READ_TIMEOUT), GUNICORN_CMD_ARGS=f"--certfile={cert} --keyfile={key}")
    url = server.url.replace("http://", "https://")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/v2/health/ready", verify=str(cert), timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and server.process.poll() is None, server.output()
            time.sleep(0.2)
        with requests.Session() as session:  # several requests on one TLS connection
            for _ in range(3):
                answer = session.post(f"{url}/v1/classify", data=png(np.zeros((28, 28), np.uint8)),
                                      headers={"Content-Type": "image/png"}, verify=str(cert), timeout=10)
                assert answer.status_code == 200 and answer.json()["results"][0]["top_k"]
        # not TLS: the handshake fails and the connection closes at once (or is reset)
        assert exchange(server.port, b"GET /v2/health/live HTTP/1.1\r\n\r\n") == b""
    finally:
        server.stop()


@pytest.mark.parametrize("args, setting", [
    ("--access-logfile -", "accesslog"),
    ("--forwarded-allow-ips=*", "forwarded_allow_ips"),
    ("--proxy-protocol", "proxy_protocol"),
], ids=["access-log", "forwarded", "proxy-protocol"])
def test_a_setting_the_worker_would_ignore_is_refused_at_start_up(tiny_repo, tmp_path, args, setting):
    environ = os.environ | {"HOST": "127.0.0.1", "PORT": str(free_port()), "MODEL_REPOSITORY": str(tiny_repo),
                            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "GUNICORN_CMD_ARGS": args,
                            "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([os.sys.executable, "-m", "service"], cwd=ROOT, env=environ, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.returncode != 0
    assert f"gunicorn setting {setting!r} is not supported" in output.decode(), output.decode()[-2000:]
