"""python -m benchmarks.http_attacks [--root DIR]: issue 19's attacks on the front door, with figures.

Each attack runs on a fresh service (`python -m service`, one worker, 8 threads, the default
REQUEST_READ_TIMEOUT of 10 s) from the checkout at --root (default: this one), so the same
attacks measure today's main in a worktree and this tree. Each row: what the attackers got
back, health meanwhile and for AFTER_SECONDS after (/v2/health/live probed every 0.25 s with a
2 s timeout, Kubernetes' liveness timeout), the worker's CPU seconds during the attack and its peak RSS. An attack
lasts at most ATTACK_SECONDS; a client still waiting then is reported as "no answer".

Figures, not a test: RELIABILITY.md's front-door table is this script's output.
"""
from __future__ import annotations

import argparse
import re
import resource
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import requests

from benchmarks.process_cost import peak_rss_mb
from benchmarks.report import markdown
from benchmarks.servers import cpu_seconds
from tests.harness import ROOT, start_server
from tests.hostile_http import REGEX_HOSTILE_JSON, chunked_with_size

ATTACK_SECONDS = 20.0
AFTER_SECONDS = 3.0
STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=ATTACK_SECONDS)


def _read_all(sock: socket.socket, until: float) -> bytes:
    answer = b""
    try:
        while time.monotonic() < until:
            sock.settimeout(max(0.01, until - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                return answer
            answer += chunk
    except TimeoutError:
        return answer + b"<no answer>"
    except OSError:
        return answer
    return answer + b"<no answer>"  # the attack's time ran out first


def _summary(answers: list[bytes]) -> str:
    """'8 × 400 json' for the statuses (and their content type) the attackers got back."""
    seen: Counter[str] = Counter()
    for answer in answers:
        codes = STATUS.findall(answer)
        kind = "json" if b"application/json" in answer else "html" if b"text/html" in answer else ""
        seen[(" ".join(c.decode() for c in codes) + f" {kind}").strip() if codes else
             "no answer" if answer.endswith(b"<no answer>") else "closed"] += 1
    return ", ".join(f"{n} × {what}" for what, n in seen.most_common())


def _send_all(port: int, requests_: list[bytes]) -> str:
    socks = [_connect(port) for _ in requests_]
    for sock, data in zip(socks, requests_):
        try:
            sock.sendall(data)
        except OSError:
            pass
    until = time.monotonic() + ATTACK_SECONDS
    answers = [_read_all(sock, until) for sock in socks]
    for sock in socks:
        sock.close()
    return _summary(answers)


VALID = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"


def negative_chunk(port: int) -> str:
    return _send_all(port, [chunked_with_size(b"-6")] * 8)


def negative_chunk_pipelined(port: int) -> str:
    return _send_all(port, [VALID + chunked_with_size(b"-6")] * 16)


def malformed_chunks(port: int) -> str:
    sizes = [b"+5", b"0x5", b"5_", b" 5", b"zz"]
    paths = [b"/v1/classify", b"/v2/models/fashion-mnist/infer", b"/v2/repository/models/fashion-mnist/load"]
    return _send_all(port, [chunked_with_size(size, path) for size in sizes for path in paths])


def endless_size_line(port: int) -> str:
    sock, line = _connect(port), b"e" * 65536
    sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;")
    try:
        for _ in range(66 * 16):  # 66 MiB
            sock.sendall(line)
    except OSError:
        pass
    answer = _read_all(sock, time.monotonic() + ATTACK_SECONDS)
    sock.close()
    return _summary([answer])


def regex_json(port: int) -> str:
    body = REGEX_HOSTILE_JSON["escaped-quotes"]
    return _send_all(port, [b"POST /v2/models/fashion-mnist/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(body) + body])


def half_read_past_budget(port: int) -> str:
    """9 bodies of 8 MiB take the worker past its 64 MiB budget; then 24 sockets send a byte every 3 s."""
    big = [b"POST /v2/models/fashion-mnist/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (8 * 1024 * 1024 - 100)
           + b" " * (8 * 1024 * 1024 - 200)] * 9
    slow = b"POST /v2/models/fashion-mnist/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    socks, stop = [_connect(port) for _ in range(9 + 24)], time.monotonic() + ATTACK_SECONDS

    def send(sock, data):
        try:
            sock.sendall(data)
        except OSError:
            pass

    senders = [threading.Thread(target=send, args=(s, d), daemon=True) for s, d in zip(socks, big + [slow] * 24)]
    for t in senders:
        t.start()
    while time.monotonic() < stop - 3:
        time.sleep(3)
        for sock in socks[9:]:
            send(sock, b" ")
    answers = [_read_all(sock, stop) for sock in socks]
    for sock in socks:
        sock.close()
    return _summary(answers)


def gunicorn_refusals(port: int) -> str:
    return _send_all(port, [b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                            b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n",
                            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"])


def non_readers(port: int) -> str:
    socks = [_connect(port) for _ in range(32)]
    for sock in socks:
        sock.setblocking(False)
        try:
            sock.send(b"GET /docs/assets/swagger-ui-bundle.js HTTP/1.1\r\nHost: x\r\n\r\n" * 16)
        except OSError:
            pass
    time.sleep(ATTACK_SECONDS)
    for sock in socks:
        sock.close()
    return "32 connections, read nothing"


def idle_sockets(port: int) -> str:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    socks = [_connect(port) for _ in range(1500)]
    time.sleep(ATTACK_SECONDS / 2)
    for sock in socks:
        sock.close()
    return "1,500 connections, sent nothing"


def busy_threads(port: int) -> str:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (56, 56), dtype=np.uint8)).save(buffer, format="PNG")
    files = [("image", (f"{i}.png", buffer.getvalue(), "image/png")) for i in range(64)]
    stop, statuses = time.monotonic() + ATTACK_SECONDS / 2, Counter()

    def load():
        with requests.Session() as session:
            while time.monotonic() < stop:
                statuses[session.post(f"http://127.0.0.1:{port}/v1/classify", files=files, timeout=60).status_code] += 1

    clients = [threading.Thread(target=load) for _ in range(16)]
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    return ", ".join(f"{n} × {status}" for status, n in statuses.items()) + " (64-image batches)"


ATTACKS = {
    "chunk size -6, 8 requests": negative_chunk,
    "chunk size -6 behind a valid request, 16 connections": negative_chunk_pipelined,
    "chunk sizes +5, 0x5, 5_, ' 5', zz on v1, v2, admin": malformed_chunks,
    "a chunk-size line of 66 MiB": endless_size_line,
    "200 KB of escaped quotes in a v2 body": regex_json,
    "9 × 8 MiB past the buffer budget + 24 sockets sending a byte every 3 s": half_read_past_budget,
    "URL of 9,000 bytes; 101 headers; CL+TE": gunicorn_refusals,
    "32 connections pipelining the 1 MB bundle, never reading": non_readers,
    "1,500 idle sockets": idle_sockets,
    "16 clients of 64-image batches on 8 threads": busy_threads,
}


class Health:
    """/v2/health/live every 0.25 s with a 2 s timeout, from a thread."""

    def __init__(self, url: str):
        self.url, self.latencies, self.failed = url, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            started = time.monotonic()
            try:
                ok = requests.get(f"{self.url}/v2/health/live", timeout=2).status_code == 200
            except requests.RequestException:
                ok = False
            self.latencies.append(time.monotonic() - started)
            self.failed += not ok

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        answered = len(self.latencies) - self.failed
        return f"{answered}/{len(self.latencies)}, worst {max(self.latencies, default=0) * 1000:.0f} ms"


def measure(root: Path, name: str, tmp: Path) -> list[str]:
    repository = tmp / "models"
    shutil.copytree(ROOT / "models", repository, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".lock", ".reports"))
    server = start_server(repository, tmp, cwd=root, PYTHONPATH=str(root), WEB_CONCURRENCY="1", THREADS="8")
    try:
        (worker,) = server.workers()
        cpu, health = cpu_seconds([worker]), Health(server.url)
        result = ATTACKS[name](server.port)
        time.sleep(AFTER_SECONDS)  # a worker the attack broke stays broken after it
        probes = health.stop()
        alive = server.workers() == [worker]
        return [name, result, probes, f"{cpu_seconds([worker]) - cpu:.1f}" if alive else "worker replaced",
                f"{peak_rss_mb(worker):.0f}" if alive else "-"]
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_attacks", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose service is attacked (default: this one)")
    parser.add_argument("--only", help="run the attacks whose name contains this")
    args = parser.parse_args()
    rows = [["attack", "what the attackers got", "health answered (2 s timeout)", "worker CPU s", "worker peak RSS MB"]]
    for name in ATTACKS:
        if args.only and args.only not in name:
            continue
        with tempfile.TemporaryDirectory(prefix="http-attacks-") as tmp:
            rows.append(measure(args.root.resolve(), name, Path(tmp)))
        print(" | ".join(rows[-1]), flush=True)
    print(f"\n{args.root.resolve()}:\n\n{markdown(rows)}")


if __name__ == "__main__":
    main()
