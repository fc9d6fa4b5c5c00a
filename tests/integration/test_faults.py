"""Fault injection against the real gunicorn: killed workers, SIGTERM under load, a full or read-only
disk during a publish, a served file corrupted on disk, broken versions appearing during restarts.
Each test prints its failures out of its total (see RELIABILITY.md)."""
import errno
import multiprocessing
import os
import resource
import signal
import socket
import threading
import time
from collections import Counter

import numpy as np
import pytest
import requests

import modelrepo
from tests.harness import rss_mb, start_server
from tests.tiny_model import publish_tiny

pytestmark = pytest.mark.slow  # fault injection: killed workers, failing disks, load

TOKEN = "fault-token"


class Load:
    """Client threads posting images until stopped; each result is a status or an exception name."""

    def __init__(self, url: str, image: bytes, threads: int = 6):
        self.url, self.image, self.results, self._stop = url, image, [], threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self):
        while not self._stop.is_set():
            try:
                response = requests.post(f"{self.url}/v1/classify", data=self.image, headers={"Content-Type": "image/png"}, timeout=30)
                self.results.append(response.status_code)
            except requests.ConnectionError as exc:
                self.results.append(_cause(exc))
                if self.results[-1] == "refused":
                    return  # the server has stopped listening: this client is done

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join()

    def failures(self) -> list:
        return [r for r in self.results if r != 200]


def _cause(exc: BaseException) -> str:
    while exc.__cause__ or exc.__context__:
        exc = exc.__cause__ or exc.__context__
        if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
            return "refused"
    return type(exc).__name__


class Figures:
    """The line each test prints for RELIABILITY.md: failures of total, how long it ran, and the
    workers' resident memory (summed: workers come and go here) before and after."""

    def __init__(self, server):
        self.server, self.started, self.rss = server, time.monotonic(), _rss(server)

    def report(self, name: str, failures: int, total: int, detail: str = "") -> None:
        after = "exited" if self.server.process.poll() is not None else f"{_rss(self.server):.0f} MB"
        print(f"\n{name}: {failures} failures of {total} requests in {time.monotonic() - self.started:.1f} s; "
              f"workers' RSS {self.rss:.0f} MB before, {after} after {detail}".rstrip())

    def load(self, name: str, load: Load) -> None:
        self.report(name, len(load.failures()), len(load.results), str(sorted(set(map(str, load.failures())))))


def _rss(server) -> float:
    return sum(rss_mb(pid) for pid in server.workers())


@pytest.fixture
def image(png) -> bytes:
    return png(np.full((28, 28), 200, dtype=np.uint8))


def test_a_killed_worker_is_replaced_and_only_its_requests_in_flight_fail(tiny_repo, tmp_path, image, eventually):
    server = start_server(tiny_repo, tmp_path)
    try:
        figures = Figures(server)
        with Load(server.url, image) as load:
            eventually(lambda: len(load.results) > 50, what="load")
            victim = server.workers()[0]
            os.kill(victim, signal.SIGKILL)
            eventually(lambda: server.replaced(victim), what="a new worker, booted")
            after_respawn = len(load.results)
            eventually(lambda: len(load.results) > after_respawn + 50, what="load after the respawn")
        figures.load("SIGKILL a worker under load", load)
        assert len(load.failures()) <= 2 * 6, "more requests failed than the 6 clients could have had on that worker"
        assert all(r == 200 for r in load.results[after_respawn + 6:]), "requests failed after the respawn"
    finally:
        server.stop()


def test_sigterm_under_load_answers_every_client_connected_before_it(tiny_repo, tmp_path, image, eventually):
    server = start_server(tiny_repo, tmp_path, GRACEFUL_TIMEOUT="10")
    figures = Figures(server)
    request = _request(image)
    results, stop = [], threading.Event()
    clients = [threading.Thread(target=_connect_and_ask, args=(server.port, request, stop, results)) for _ in range(6)]
    for client in clients:
        client.start()
    try:
        eventually(lambda: len(results) >= 50, what="50 answers before SIGTERM")
    except AssertionError:
        stop.set()
        server.stop()
        raise
    sent = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(20)
    stopped = time.monotonic() - sent
    stop.set()
    for client in clients:
        client.join(60)  # each socket gives up after 30 s
    assert not any(client.is_alive() for client in clients), "a client still waits a minute after SIGTERM"
    before = [answer for connected, answer in results if connected < sent]
    after = [answer for connected, answer in results if connected >= sent]
    figures.report("SIGTERM under load", sum(a != OK for a in before), len(before),
                   f"(connected before it; after it: {dict(Counter(after))})")
    assert code == 0 and stopped < 10, (code, stopped)
    assert before and all(answer == OK for answer in before), before
    # A connection made after SIGTERM is answered, refused once every listening socket is closed,
    # or reset by the kernel if it landed in a socket's queue between its last accept and its
    # close (no process can drain that instant; a load balancer stops sending first, see the
    # preStop hook in deploy/k8s). It never gets an error answer.
    assert not [answer for answer in after if answer.startswith("HTTP/") and answer != OK], after


OK = "HTTP/1.1 200 OK"


def _request(image: bytes) -> bytes:
    return (f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {len(image)}\r\n"
            f"Connection: close\r\n\r\n").encode() + image


def _connect_and_ask(port: int, request: bytes, stop: threading.Event, results: list) -> None:
    """One client: connect, ask, read the status line, again, until refused; each result is
    (when the connection was established, the status line or what went wrong)."""
    while not stop.is_set():
        try:
            client = socket.create_connection(("127.0.0.1", port), timeout=30)
        except ConnectionRefusedError:
            results.append((time.monotonic(), "refused"))
            return
        connected = time.monotonic()
        try:
            client.sendall(request)
        except OSError:
            pass  # reset: the status line below says so
        results.append((connected, _status_line(client).decode(errors="replace") or "closed without an answer"))


def test_sigterm_answers_every_connected_client_including_the_backlog(tiny_repo, tmp_path, image):
    server = start_server(tiny_repo, tmp_path, WEB_CONCURRENCY="1", THREADS="2")
    figures = Figures(server)
    worker = server.workers()[0]
    os.kill(worker, signal.SIGSTOP)  # the worker accepts nothing: new clients wait in the kernel's backlog
    request = _request(image)
    clients = []
    for _ in range(20):
        client = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        client.sendall(request)
        clients.append(client)
    # The master forwards SIGTERM to its worker; sending it to the stopped worker too makes sure
    # the worker has it before it runs again (a stopped process keeps signals until SIGCONT).
    server.process.send_signal(signal.SIGTERM)
    os.kill(worker, signal.SIGTERM)
    os.kill(worker, signal.SIGCONT)
    answers = [_status_line(client) for client in clients]
    started = time.monotonic()
    assert server.process.wait(30) == 0
    assert time.monotonic() - started < 5, "the worker waited out the graceful timeout after its last answer"
    figures.report("SIGTERM with 20 clients in the backlog", 20 - answers.count(b"HTTP/1.1 200 OK"), 20)
    assert answers == [b"HTTP/1.1 200 OK"] * 20, answers


def _status_line(client: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := client.recv(65536):
            data += chunk
    except OSError as exc:
        data = repr(exc).encode()
    client.close()
    return data.split(b"\r\n", 1)[0]


def _publish_on_a_full_disk(repo):
    # RLIMIT_FSIZE makes writes past 8 kB (the tiny model is 31 kB) fail with EFBIG, as ENOSPC would on a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8 * 1024, 8 * 1024))
    _publish_expecting(repo, (errno.EFBIG, errno.ENOSPC))


def _publish_to_a_read_only_repository(repo):
    # root ignores file modes: publish as nobody, to whom the model folder is read-only.
    if os.getuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    _publish_expecting(repo, (errno.EACCES, errno.EROFS, errno.EPERM))


def _publish_expecting(repo, codes):
    try:
        publish_tiny(repo, seed=2, model=None)
    except OSError as exc:
        os._exit(3 if exc.errno in codes else 4)
    os._exit(5)  # published after all: the fault did not take


@pytest.mark.parametrize("fault", [_publish_on_a_full_disk, _publish_to_a_read_only_repository], ids=["full-disk", "read-only"])
def test_a_publish_that_fails_on_disk_leaves_no_partial_version(tiny_repo, tmp_path, fault, classify, metric, eventually):
    staging = tmp_path / ".staging-fashion-mnist-2"
    staging.mkdir(mode=0o777)
    staging.chmod(0o777)
    for folder in (tmp_path, tiny_repo):
        folder.chmod(0o755)  # nobody must reach the repository to be refused by it
    server = start_server(tiny_repo, tmp_path, RELOAD_POLL_SECONDS="0.3")
    try:
        figures = Figures(server)
        (tiny_repo / "fashion-mnist").chmod(0o555)
        child = multiprocessing.get_context("fork").Process(target=fault, args=(tiny_repo,))
        child.start()
        child.join(60)
        (tiny_repo / "fashion-mnist").chmod(0o755)
        assert child.exitcode == 3, f"the publish did not fail as the fault should make it (exit {child.exitcode})"
        assert modelrepo.list_versions(tiny_repo, "fashion-mnist") == [1]
        scans = metric(server.url, "serving_repository_scans_total")
        eventually(lambda: metric(server.url, "serving_repository_scans_total") >= scans + 4, what="scans after the fault")
        assert metric(server.url, "serving_model_load_failures_total") == 0, "a reader saw a partial version"
        answers = [classify(server.url) for _ in range(10)]
        figures.report(f"publish fails on disk ({fault.__name__})", sum(a != (200, "1") for a in answers), len(answers))
        assert answers == [(200, "1")] * 10
        assert publish_tiny(tiny_repo, seed=3) == 2  # the next publish cleans up and goes on
        assert not [p for p in (tiny_repo / "fashion-mnist").iterdir() if p.name.startswith(".tmp-")]
    finally:
        (tiny_repo / "fashion-mnist").chmod(0o755)
        server.stop()


def test_a_served_file_corrupted_on_disk_keeps_serving_from_memory(tiny_repo, tmp_path, classify, metric, eventually):
    server = start_server(tiny_repo, tmp_path, ADMIN_TOKEN=TOKEN, RELOAD_POLL_SECONDS="0.3")
    try:
        figures = Figures(server)
        model = modelrepo.version_dir(tiny_repo, "fashion-mnist", 1) / "model.onnx"
        corrupt = model.with_name("corrupt.tmp")
        corrupt.write_bytes(model.read_bytes()[:100])
        corrupt.replace(model)
        # Each worker's next scan notices, logs and counts it once, and goes on serving from memory.
        noticed = [f"{pid} ERROR service.slots: fashion-mnist/1 changed on disk and no longer verifies" for pid in server.workers()]
        eventually(lambda: all(line in server.output() for line in noticed), what="the corruption noticed by each worker")
        assert metric(server.url, "serving_model_load_failures_total") == 2
        assert all(classify(server.url) == (200, "1") for _ in range(10))
        # The next load of that version is refused, and the one in memory goes on serving.
        answer = requests.post(f"{server.url}/v2/repository/models/fashion-mnist/load", json={"parameters": {"version": "1"}},
                               headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert answer.status_code == 400 and "sha256" in answer.json()["error"]
        model.unlink()
        answers = [classify(server.url) for _ in range(10)]
        figures.report("served model.onnx truncated, then deleted", sum(a != (200, "1") for a in answers), len(answers))
        assert answers == [(200, "1")] * 10
    finally:
        server.stop()


def test_broken_versions_appearing_while_workers_restart_never_take_the_service_down(tiny_repo, tmp_path, image, eventually):
    server = start_server(tiny_repo, tmp_path, RELOAD_POLL_SECONDS="0.2")
    try:
        figures = Figures(server)
        with Load(server.url, image, threads=4) as load:
            for round_ in range(4):
                victim = server.workers()[0]
                os.kill(victim, signal.SIGKILL)
                broken = modelrepo.version_dir(tiny_repo, "fashion-mnist", round_ + 2)
                broken.mkdir()
                (broken / "metadata.json").mkdir()  # what used to stop a booting worker, and so the master
                eventually(lambda: server.replaced(victim), what="a new worker, booted")
            settled = len(load.results)
            eventually(lambda: len(load.results) > settled + 40, what="load after the last restart")
        figures.load("4 worker kills with broken versions appearing", load)
        assert server.process.poll() is None, "the master died"
        # Each worker listens on a socket of its own (reuse_port), so besides its request in flight
        # a client can lose one reconnect that landed in the dying worker's listen queue.
        assert len(load.failures()) <= 4 * 4 * 2, "more failures than requests on the killed workers"
        assert all(r == 200 for r in load.results[settled + 4:])
    finally:
        server.stop()
