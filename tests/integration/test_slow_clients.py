"""Slow clients hold no request thread: requests reach threads only once complete, late ones get 408."""
import socket
import threading
import time

import numpy as np
import pytest
import requests

from service.testing import rss_mb, start_server

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
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        pass
    return data


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
