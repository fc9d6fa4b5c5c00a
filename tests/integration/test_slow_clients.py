"""Slow clients hold no request thread: requests reach threads only once complete, late ones get 408;
and health answers whatever clients do (slow senders, non-readers, idle sockets, busy threads)."""
import resource
import socket
import threading
import time

import numpy as np
import pytest
import requests

from tests.harness import rss_mb, start_server
from tests.sockets import read_until_closed

pytestmark = pytest.mark.slow  # waits out read timeouts by design: 70 s

SLOW_SOCKETS = 64
READ_TIMEOUT = 3.0


@pytest.fixture
def one_worker(tiny_repo, tmp_path):
    """One worker with 8 threads: before, 8 slow sockets were enough to stall it."""
    server = start_server(tiny_repo, tmp_path, WEB_CONCURRENCY="1", THREADS="8", REQUEST_READ_TIMEOUT=str(READ_TIMEOUT))
    yield server
    server.stop()


class Trickle:
    """Sockets that send a request a few bytes at a time, a drip per socket every half second."""

    def __init__(self, port: int, request: bytes, count: int = SLOW_SOCKETS, first: int = 20):
        self.sockets = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]
        self.request, self.sent, self._stop = request, first, threading.Event()
        for s in self.sockets:
            s.sendall(request[:first])
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    def _drip(self):
        while not self._stop.wait(0.5) and self.sent < len(self.request) - 1:
            for s in self.sockets:
                try:
                    s.sendall(self.request[self.sent:self.sent + 1])
                except OSError:
                    pass
            self.sent += 1

    def stop(self):
        self._stop.set()
        self._thread.join()


def _health_seconds(url: str) -> float:
    started = time.monotonic()
    assert requests.get(f"{url}/v2/health/live", timeout=10).status_code == 200
    return time.monotonic() - started


def _answer(sock: socket.socket) -> bytes:
    try:
        return read_until_closed(sock)
    except OSError:  # a slow socket the server timed out: whatever it had sent is lost too
        return b""


SLOW_HEAD = b"POST /v2/models/fashion-mnist/infer HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" + b"X-Pad: " + b"a" * 200 + b"\r\n\r\n"
SLOW_BODY = b"POST /v2/models/fashion-mnist/infer HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n" + b"{" * 4999 + b"}"


@pytest.mark.parametrize("request_bytes, first", [(SLOW_HEAD, 20), (SLOW_BODY, len(SLOW_BODY) - 4990)], ids=["slow-head", "slow-body"])
def test_slow_sockets_neither_stall_the_service_nor_outlive_the_read_timeout(one_worker, request_bytes, first):
    (worker,) = one_worker.workers()
    rss, started = rss_mb(worker), time.monotonic()
    trickle = Trickle(one_worker.port, request_bytes, first=first)
    try:
        latencies = [_health_seconds(one_worker.url) for _ in range(5)]
        print(f"\n/v2/health/live with {SLOW_SOCKETS} slow sockets open: {max(latencies) * 1000:.0f} ms at most of 5")
        assert max(latencies) < 1.0, latencies
        answers = [_answer(s) for s in trickle.sockets]  # each ends when the server gives up on it
    finally:
        trickle.stop()
        for s in trickle.sockets:
            s.close()
    print(f"{SLOW_SOCKETS} slow sockets answered 408 in {time.monotonic() - started:.1f} s; "
          f"the worker's RSS {rss:.0f} MB before, {rss_mb(worker):.0f} MB after")
    assert {a.split(b"\r\n", 1)[0] for a in answers} == {b"HTTP/1.1 408 Request Timeout"}
    assert all(b'"error":' in a and b"REQUEST_READ_TIMEOUT" in a for a in answers)
    metrics = requests.get(f"{one_worker.url}/metrics", timeout=10).text
    assert f'serving_requests_total{{api="other",model="unknown",status="408"}} {SLOW_SOCKETS}.0' in metrics


def test_a_client_that_waits_for_100_continue_is_told_to_send(one_worker, png):
    image = png(np.zeros((28, 28), dtype=np.uint8))
    with socket.create_connection(("127.0.0.1", one_worker.port), timeout=10) as s:
        s.sendall(f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {len(image)}\r\n"
                  f"Expect: 100-continue\r\nConnection: close\r\n\r\n".encode())
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # at once, not after a client-side timeout
        s.sendall(image)
        answer = _answer(s)
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.count(b"100 Continue") == 0


def test_a_declared_body_over_the_limit_gets_413_before_it_is_sent(tiny_repo, tmp_path):
    server = start_server(tiny_repo, tmp_path, WEB_CONCURRENCY="1", MAX_REQUEST_BYTES="4096")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 9000000\r\n\r\n")
            answer = _answer(s)  # no body sent at all: the answer comes anyway
    finally:
        server.stop()
    assert answer.startswith(b"HTTP/1.1 413") and b"MAX_REQUEST_BYTES" in answer


# -- health, whatever clients do -------------------------------------------------------------------
# A Kubernetes liveness probe gives up after 2 s (deploy/k8s): a probe that takes longer fails here.
PROBE_TIMEOUT = 2.0


class HealthWatch:
    """Probes /v2/health/live and /ready every 0.2 s from a thread while an attack runs."""

    def __init__(self, url: str):
        self.url, self.latencies, self.failures = url, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)
        self._thread.start()

    def _probe(self):
        while not self._stop.wait(0.2):
            for path in ("live", "ready"):
                started = time.monotonic()
                try:
                    status = requests.get(f"{self.url}/v2/health/{path}", timeout=PROBE_TIMEOUT).status_code
                except requests.RequestException as exc:
                    status = type(exc).__name__
                self.latencies.append(time.monotonic() - started)
                if status != 200:
                    self.failures.append(status)

    def stop(self, what: str) -> None:
        self._stop.set()
        self._thread.join()
        print(f"\n{what}: health answered {len(self.latencies) - len(self.failures)} of {len(self.latencies)} probes, "
              f"worst {max(self.latencies, default=0) * 1000:.0f} ms")
        assert len(self.latencies) >= 4 and not self.failures, self.failures


def _open_files(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count), hard))


def test_health_answers_past_the_buffer_budget_and_drippers_still_get_408(one_worker):
    """Past BUFFER_BUDGET (64 MiB), the last worker handed half-read requests to threads, whose
    reads each got a fresh timeout: a byte every 3 s held a thread for ever."""
    (worker,) = one_worker.workers()
    body = b"[" * (8 * 1024 * 1024 - 200)
    head = b"POST /v2/models/fashion-mnist/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (len(body) + 100)
    answers: list[bytes] = []

    def drip():
        with socket.create_connection(("127.0.0.1", one_worker.port), timeout=READ_TIMEOUT * 4) as s:
            try:
                s.sendall(head + body)
                for _ in range(int(READ_TIMEOUT * 3)):
                    time.sleep(1)
                    s.sendall(b" ")  # the body never reaches its declared length
            except OSError:
                pass  # refused and closed: the answer is waiting
            answers.append(_answer(s))

    watch = HealthWatch(one_worker.url)
    senders = [threading.Thread(target=drip) for _ in range(9)]  # 9 × 8 MiB: past the budget
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    watch.stop("9 connections of 8 MiB dripping past the buffer budget")
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 408 Request Timeout"] * 9
    assert one_worker.workers() == [worker]


def test_health_answers_while_clients_pipeline_big_responses_and_never_read(one_worker):
    """32 connections pipelining the 1 MB Swagger bundle, reading nothing: writes used to block threads."""
    request = b"GET /docs/assets/swagger-ui-bundle.js HTTP/1.1\r\nHost: x\r\n\r\n" * 8
    sockets = [socket.create_connection(("127.0.0.1", one_worker.port)) for _ in range(32)]
    watch = HealthWatch(one_worker.url)
    try:
        for s in sockets:
            s.sendall(request)
        time.sleep(READ_TIMEOUT + 2)  # the attack lasts past the read timeout, when they are dropped
    finally:
        watch.stop("32 connections pipelining the 1 MB bundle, never reading")
        for s in sockets:
            s.close()


def test_health_answers_with_1500_idle_sockets_open(one_worker):
    _open_files(1600)
    sockets = [socket.create_connection(("127.0.0.1", one_worker.port)) for _ in range(1500)]
    watch = HealthWatch(one_worker.url)
    try:
        time.sleep(2)
    finally:
        watch.stop("1,500 idle sockets")
        for s in sockets:
            s.close()


def test_health_answers_while_every_thread_computes(one_worker, png):
    """8 threads, 16 clients posting 64-image batches without pause."""
    images = png(np.random.default_rng(0).integers(0, 255, (56, 56), dtype=np.uint8))
    files = [("image", (f"{i}.png", images, "image/png")) for i in range(64)]
    stop, statuses = threading.Event(), []

    def load():
        with requests.Session() as session:
            while not stop.is_set():
                statuses.append(session.post(f"{one_worker.url}/v1/classify", files=files, timeout=30).status_code)

    clients = [threading.Thread(target=load) for _ in range(16)]
    for t in clients:
        t.start()
    watch = HealthWatch(one_worker.url)
    time.sleep(3)
    watch.stop("every thread classifying 64-image batches")
    stop.set()
    for t in clients:
        t.join()
    assert statuses and set(statuses) == {200}
