"""The servers under test, on free loopback ports: our service, and the naive Flask baseline."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from service.settings import Settings
from tests.harness import ROOT, Server, free_port, start_server

READY_TIMEOUT = 60.0
# settle(): the server is idle once its processes use less than this share of one core.
IDLE_SHARE = 0.1
IDLE_WINDOW_S = 0.2


@contextlib.contextmanager
def service(repository: Path, tmp: Path, batching: bool, device: str = "cpu", root: Path = ROOT) -> Iterator[Server]:
    """The real service (`python -m service`, gunicorn and all) of the checkout at `root`, ready to answer."""
    env = {
        "PYTHONPATH": str(root),
        # Batching on: the service default (64), or $MAX_BATCH_SIZE (a GPU wants bigger merged batches).
        "MAX_BATCH_SIZE": (os.environ.get("MAX_BATCH_SIZE") or "64") if batching else "1", "LOG_LEVEL": "warning", "DEVICE": device,
        # start_server pins 2 workers for tests; a benchmark wants the service's own default.
        "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY") or str(Settings().web_concurrency),
    }
    server = start_server(repository, tmp, cwd=root, **env)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def naive(model: Path, tmp: Path, workers: int, device: str = "cpu") -> Iterator[Server]:
    """benchmarks/naive_app.py under `gunicorn -w <workers> -k sync`, ready to answer."""
    port = free_port()
    env = os.environ | {"MODEL_PATH": str(model), "DEVICE": device,
                        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", "sync", "-b", f"127.0.0.1:{port}",
               "--log-level", "warning", "benchmarks.naive_app:create_app()"]
    log = tmp / f"naive-{port}.log"
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_listening(server, workers)
        yield server
    finally:
        server.stop(signal.SIGTERM)


def _wait_listening(server: Server, workers: int) -> None:
    # The naive app has no health route; gunicorn is up once the port accepts and the workers exist.
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"naive app exited with {server.process.returncode}:\n{server.output()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", server.port)) == 0 and len(server.workers()) >= workers:
                return
        time.sleep(0.1)
    raise RuntimeError(f"naive app not listening in {READY_TIMEOUT:g} s:\n{server.output()}")


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system, all threads) the processes have used so far."""
    total = 0
    for pid in pids:
        try:
            # utime and stime, fields 14 and 15; the name (field 2) may hold spaces, so split after ")".
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # a worker restarted while we looked
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def settle(server: Server, timeout: float = 30.0) -> None:
    """Wait until the server stops using CPU, so one run's leftover requests never count in the next.

    wrk drops its in-flight requests at the deadline, but the server still works through them
    (64-image requests at concurrency 32: seconds of work).
    """
    pids = [server.process.pid, *server.workers()]
    deadline = time.monotonic() + timeout
    before = cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(IDLE_WINDOW_S)
        after = cpu_seconds(pids)
        if after - before < IDLE_SHARE * IDLE_WINDOW_S:
            return
        before = after
