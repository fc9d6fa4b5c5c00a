"""Run the real service (`python -m service`, gunicorn and all) as a child process on loopback.

For the tests and the benchmarks (`python -m benchmarks…` from the repository root imports it as
`tests.harness`), which all want the service exactly as the README starts it. It lives with the
tests, outside the serving image.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 60.0


def rss_mb(pid: int) -> float:
    """A process's resident memory now, in MB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # kB → MB
    except OSError:
        pass
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path
    logs_boots: bool = True  # "Worker ready" lines are logged at info level

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        """Signal the master and wait for it; SIGKILL the whole group past the timeout."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def workers(self) -> list[int]:
        """pids of the gunicorn workers (the master's children)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return sorted(int(pid) for pid in children.read_text().split())
        except OSError:
            return []

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=5) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):  # not listening yet, workers booting, or 503
            return False

    def booted(self) -> bool:
        """Every worker the launcher announced has built its app (gunicorn's post_worker_init)."""
        log = self.output()
        if not self.logs_boots:
            return True
        announced = re.search(r"with (\d+) workers", log)
        return announced is not None and log.count("Worker ready (pid:") >= int(announced.group(1))

    def replaced(self, victim: int) -> bool:
        """A worker replaced `victim`, and has booted."""
        workers = self.workers()
        new = [pid for pid in workers if pid != victim and f"Worker ready (pid: {pid})" in self.output()]
        return victim not in workers and len(new) == len(workers) and self.ready()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every worker has booted and the service answers ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited with {self.process.returncode}:\n{self.output()}")
            if self.booted() and self.ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"service not ready in {timeout:g} s:\n{self.output()}")


def start_server(repository: Path | str, tmp: Path, wait_ready: bool = True, cwd: Path = ROOT, **env: str) -> Server:
    """`python -m service` on a free loopback port with env overrides, ready to answer.

    Defaults suit tests (2 workers, no polling, metrics and captures in tmp); keyword arguments override
    them. A start that fails never leaves a server behind.
    """
    port = free_port()
    environ = os.environ | {
        "HOST": "127.0.0.1", "PORT": str(port), "MODEL_REPOSITORY": str(repository),
        "WEB_CONCURRENCY": "2", "RELOAD_POLL_SECONDS": "0", "LOG_LEVEL": "info",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / f"metrics-{port}"),
        # Captures in tmp, never the working directory's captures.db that scripts/serve.sh uses.
        "CAPTURE_URL": f"sqlite:///{tmp / f'captures-{port}.db'}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    } | env
    log = tmp / f"server-{port}.log"
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=cwd, env=environ,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}", log, logs_boots=environ["LOG_LEVEL"].lower() in ("debug", "info"))
    try:
        if wait_ready:
            server.wait_ready()
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return server
