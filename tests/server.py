"""Start the real service (`python -m service`, gunicorn and all) on a free loopback port."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(repository: Path, tmp: Path, wait_ready: bool = True, **env: str) -> Server:
    """Run `python -m service` with env overrides; wait until /v2/health/ready answers 200."""
    port = free_port()
    environ = os.environ | {
        "HOST": "127.0.0.1", "PORT": str(port), "MODEL_REPOSITORY": str(repository),
        "WEB_CONCURRENCY": "2", "RELOAD_POLL_SECONDS": "0", "LOG_LEVEL": "info",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / f"metrics-{port}"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    } | env
    log = tmp / f"server-{port}.log"
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=environ,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        if wait_ready:
            _wait_ready(server)
    except BaseException:
        server.stop(signal.SIGKILL)  # never leave a server behind a failed start
        raise
    return server


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"service exited with {server.process.returncode}:\n{server.output()}")
        try:
            if requests.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or workers still booting
            pass
        time.sleep(0.2)
    raise RuntimeError(f"service not ready in 60 s:\n{server.output()}")
