"""Capture and feedback against the real service and a real store (SQLite and PostgreSQL)."""
from __future__ import annotations

import numpy as np
import pytest
import requests

import store
from tests.harness import start_server
from tests.postgres import Postgres
from tests.tiny_model import publish_tiny

pytestmark = pytest.mark.slow  # a server a test, on SQLite and PostgreSQL: 80 s

TOKEN = "feedback-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
V2_INFER = "/v2/models/fashion-mnist/infer"


def _classify(server, png, images: int = 2) -> requests.Response:
    files = [("image", (f"{i}.png", png(np.full((28, 28), 40 * i, np.uint8)), "image/png")) for i in range(images)]
    response = requests.post(f"{server.url}/v1/classify", files=files, timeout=30)
    response.raise_for_status()
    return response


def _infer(server, body_id: str | None = None) -> requests.Response:
    body = {"inputs": [{"name": "images", "shape": [2, 28, 28, 1], "datatype": "FP32", "data": [0.25] * (2 * 784)}]}
    response = requests.post(f"{server.url}{V2_INFER}", json=body | ({"id": body_id} if body_id else {}), timeout=30)
    response.raise_for_status()
    return response


def _feedback(server, body, headers=AUTH) -> requests.Response:
    return requests.post(f"{server.url}/v1/feedback", json=body, headers=headers, timeout=30)


@pytest.fixture
def capturing(tiny_repo, tmp_path, store_url):
    """The service capturing into a fresh store, feedback by token; (server, engine)."""
    server = start_server(tiny_repo, tmp_path, CAPTURE_URL=store_url, FEEDBACK_TOKEN=TOKEN)
    engine = store.connect(store_url)
    yield server, engine
    server.stop()
    engine.dispose()


def test_every_image_is_kept_as_the_model_saw_it_and_takes_a_true_label(capturing, png, metric, eventually):
    server, engine = capturing
    v1 = _classify(server, png)
    request_id = v1.json()["request_id"]
    assert v1.headers["X-Request-ID"] == request_id and [r["index"] for r in v1.json()["results"]] == [0, 1]
    v2_mine, v2_made = _infer(server, "client-7").json(), _infer(server).json()
    assert v2_mine["id"] == "client-7" and len(v2_made["id"]) == 32
    eventually(lambda: store.count(engine) == 6, what="six captures written")

    seen = store.find(engine, request_id, 1, 0)
    assert seen.api == "v1" and seen.input.dtype == np.uint8 and seen.input.shape == (28, 28) and (seen.input == 40).all()
    tensor = store.find(engine, "client-7", 1, 0)
    assert tensor.api == "v2" and tensor.input.dtype == np.float32 and tensor.input.shape == (28, 28, 1)

    predicted = seen.predicted
    right = _feedback(server, {"id": request_id, "index": 1, "class_id": predicted})
    assert right.status_code == 200 and right.json()["correct"] is True and right.json()["source"] == "token"
    wrong = _feedback(server, {"id": v2_made["id"], "label": "Shirt" if predicted != 6 else "Bag"})
    assert wrong.status_code == 200, wrong.text
    assert store.find(engine, request_id, 1, 0).label == predicted
    assert metric(server.url, 'serving_feedback_total{model="fashion-mnist",outcome="right"') == 1
    assert metric(server.url, "serving_captures_written_total") == 6


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared(request, tmp_path_factory):
    """One capturing service per store for the module's read-mostly tests; (server, engine)."""
    tmp = tmp_path_factory.mktemp("capture")
    publish_tiny(tmp / "models")
    url = f"sqlite:///{tmp / 'captures.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres").database()
    server = start_server(tmp / "models", tmp, CAPTURE_URL=url, FEEDBACK_TOKEN=TOKEN)
    engine = store.connect(url)
    yield server, engine
    server.stop()
    engine.dispose()


@pytest.mark.parametrize("body, headers, status", [
    ({"id": "never-seen", "class_id": 1}, AUTH, 404),
    ({"id": "R", "index": 5, "class_id": 1}, AUTH, 404),  # the request had two images
    ({"id": "R", "label": "Hat"}, AUTH, 400),
    ({"id": "R", "class_id": 10}, AUTH, 400),
    ({"id": "R", "class_id": 1, "label": "Bag"}, AUTH, 400),
    ({"id": "R"}, AUTH, 400),
    ({"id": "R", "class_id": "1"}, AUTH, 400),
    ({"id": "R", "class_id": -1}, AUTH, 400),
    ({"id": "", "class_id": 1}, AUTH, 400),
    ({"id": "a\u0000b", "class_id": 1}, AUTH, 400),
    ({"id": "x" * 129, "class_id": 1}, AUTH, 400),
    ({"id": "R", "class_id": 1, "extra": 1}, AUTH, 400),
    ([1, 2], AUTH, 400),
    ({"id": "R", "class_id": 1}, {}, 401),
    ({"id": "R", "class_id": 1}, {"Authorization": "Bearer wrong"}, 401),
])
def test_bad_feedback_is_a_4xx_that_says_why(shared, png, eventually, body, headers, status):
    server, engine = shared
    request_id = _classify(server, png).json()["request_id"]
    eventually(lambda: store.find(engine, request_id, 1, 0) is not None, what="the capture written")
    if isinstance(body, dict):
        body = {k: request_id if v == "R" else v for k, v in body.items()}
    response = _feedback(server, body, headers)
    assert response.status_code == status and response.json()["error"], response.text


def test_feedback_needs_a_json_body(shared):
    server, _ = shared
    response = requests.post(f"{server.url}/v1/feedback", data="id=x", timeout=10,
                             headers=AUTH | {"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415


def test_a_v2_id_must_be_printable_and_bounded(shared):
    server, _ = shared
    body = {"id": "x" * 129, "inputs": [{"name": "images", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0.0] * 784}]}
    assert requests.post(f"{server.url}{V2_INFER}", json=body, timeout=10).status_code == 400


def test_feedback_is_refused_until_configured_and_public_labels_are_limited(tiny_repo, tmp_path, png, eventually):
    closed = start_server(tiny_repo, tmp_path)
    try:
        assert _feedback(closed, {"id": "x", "class_id": 1}, {}).status_code == 403
    finally:
        closed.stop()
    url = f"sqlite:///{tmp_path / 'public.db'}"
    public = start_server(tiny_repo, tmp_path, WEB_CONCURRENCY="1", CAPTURE_URL=url, FEEDBACK_TOKEN=TOKEN,
                          FEEDBACK_PUBLIC="1", FEEDBACK_PUBLIC_PER_MINUTE="3")
    engine = store.connect(url)
    try:
        request_id = _classify(public, png).json()["request_id"]
        eventually(lambda: store.find(engine, request_id, 0, 0) is not None, what="the capture written")
        assert _feedback(public, {"id": request_id, "class_id": 2}).status_code == 200  # the token's label
        anonymous = [_feedback(public, {"id": request_id, "index": index, "class_id": 3}, {}).status_code
                     for index in (0, 1, 1, 1)]
        # A public label never replaces the token's (409); it may replace a public one; the 4th in a minute is 429.
        assert anonymous == [409, 200, 200, 429]
        assert store.find(engine, request_id, 1, 0).label_source == "public"
        assert store.find(engine, request_id, 0, 0).label_source == "token"
    finally:
        public.stop()
        engine.dispose()


def test_behind_a_proxy_public_labels_are_limited_per_client_not_per_proxy(tiny_repo, tmp_path, png, eventually):
    # As in the compose stack: nginx appends the client's address to X-Forwarded-For. A client's
    # own X-Forwarded-For entries (left of the proxy's) change nothing.
    url = f"sqlite:///{tmp_path / 'proxied.db'}"
    server = start_server(tiny_repo, tmp_path, WEB_CONCURRENCY="1", CAPTURE_URL=url, FEEDBACK_PUBLIC="1",
                          FEEDBACK_PUBLIC_PER_MINUTE="2", FORWARDED_FOR_HOPS="1")
    engine = store.connect(url)
    try:
        request_id = _classify(server, png).json()["request_id"]
        eventually(lambda: store.find(engine, request_id, 0, 0) is not None, what="the capture written")

        def label(forwarded_for: str) -> int:
            return _feedback(server, {"id": request_id, "class_id": 3}, {"X-Forwarded-For": forwarded_for}).status_code

        assert [label("203.0.113.7") for _ in range(3)] == [200, 200, 429]
        assert label("198.51.100.1, 203.0.113.7") == 429  # the same client, whatever it writes before
        assert label("198.51.100.9") == 200  # another client behind the same proxy has its own limit
    finally:
        server.stop()
        engine.dispose()


def test_retention_bounds_the_store_while_it_runs(tiny_repo, tmp_path, store_url, png, metric, eventually):
    server = start_server(tiny_repo, tmp_path, CAPTURE_URL=store_url, CAPTURE_MAX_ROWS="5", CAPTURE_PRUNE_SECONDS="0.2")
    engine = store.connect(store_url)
    try:
        for _ in range(6):
            _classify(server, png, images=3)
        eventually(lambda: metric(server.url, "serving_captures_written_total") == 18, what="18 captures written")
        eventually(lambda: store.count(engine) <= 5, what="the store pruned to CAPTURE_MAX_ROWS")
        assert metric(server.url, "serving_capture_pruned_total") >= 13
    finally:
        server.stop()
        engine.dispose()


def test_a_sample_rate_of_zero_keeps_nothing_and_capture_can_be_off(tiny_repo, tmp_path, png, metric):
    server = start_server(tiny_repo, tmp_path, CAPTURE_SAMPLE_RATE="0", FEEDBACK_TOKEN=TOKEN)
    try:
        request_id = _classify(server, png).json()["request_id"]
        assert _feedback(server, {"id": request_id, "class_id": 1}).status_code == 404
    finally:
        server.stop()
    off = start_server(tiny_repo, tmp_path, CAPTURE_ENABLED="0", FEEDBACK_TOKEN=TOKEN)
    try:
        request_id = _classify(off, png).json()["request_id"]
        assert _feedback(off, {"id": request_id, "class_id": 1}).status_code == 409
        assert metric(off.url, "serving_captures_written_total") == 0
    finally:
        off.stop()


def test_a_store_that_is_down_costs_captures_never_requests(tiny_repo, tmp_path, png, metric, eventually):
    database = Postgres()  # its own server: this test stops it
    url = database.database()
    server = start_server(tiny_repo, tmp_path, CAPTURE_URL=url, FEEDBACK_TOKEN=TOKEN)
    try:
        _classify(server, png)
        eventually(lambda: metric(server.url, "serving_captures_written_total") == 2, what="captures written")
        database.stop()
        for _ in range(5):
            _classify(server, png)  # raises on anything but 200
        eventually(lambda: metric(server.url, 'serving_capture_dropped_total{reason="store_error"}') == 10,
                   what="ten captures dropped and counted")
        assert _feedback(server, {"id": "x", "class_id": 1}).status_code == 503
        database.start()
        _classify(server, png)
        eventually(lambda: metric(server.url, "serving_captures_written_total") == 4, what="captures written again")
    finally:
        server.stop()
        database.close()


def test_an_unreachable_sqlite_file_costs_captures_never_requests(tiny_repo, tmp_path, png, metric, eventually):
    server = start_server(tiny_repo, tmp_path, CAPTURE_URL=f"sqlite:///{tmp_path / 'missing' / 'dir' / 'c.db'}")
    try:
        _classify(server, png)
        eventually(lambda: metric(server.url, 'serving_capture_dropped_total{reason="store_error"}') == 2,
                   what="two captures dropped and counted")
    finally:
        server.stop()


def test_a_worker_that_stops_writes_what_it_holds(tiny_repo, tmp_path, png):
    url = f"sqlite:///{tmp_path / 'stop.db'}"
    server = start_server(tiny_repo, tmp_path, CAPTURE_URL=url)
    try:
        for _ in range(3):
            _classify(server, png)
    finally:
        assert server.stop() == 0
    engine = store.connect(url)
    assert store.count(engine) == 6  # nothing left in a queue at SIGTERM
    engine.dispose()
