"""A real Prometheus server (Debian's `prometheus`) on a free loopback port, for tests."""
from __future__ import annotations

import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import requests
import yaml

from tests.harness import free_port


@contextmanager
def prometheus(tmp: Path, targets: list[str], config: dict | None = None):
    """Yield the base URL of a Prometheus scraping `targets` (host:port) every second."""
    config = config or {}
    config.setdefault("global", {}).update(scrape_interval="1s", evaluation_interval="1s")
    config.setdefault("scrape_configs", [{"job_name": "serving", "static_configs": [{"targets": targets}]}])
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    process = subprocess.Popen(
        ["prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, process, tmp)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def _wait(url: str, process: subprocess.Popen, tmp: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((tmp / "prometheus.log").read_text())
        try:
            if requests.get(f"{url}/-/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError("prometheus not ready in 30 s")


def query(url: str, promql: str, wait_s: float = 20) -> list[dict]:
    """Poll the query API until the expression has a result (or time runs out)."""
    deadline = time.monotonic() + wait_s
    while True:
        result = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()["data"]["result"]
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)
