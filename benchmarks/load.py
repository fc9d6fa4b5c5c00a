"""Drive the real service with hey and turn hey's summary into numbers."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import requests

from benchmarks.payloads import Payload, write
from service.settings import Settings
from service.testing import Server, start_server

HEY = "hey"


@dataclass(frozen=True)
class LoadResult:
    scenario: str
    batching: bool
    concurrency: int
    images_per_request: int
    seconds: float
    ok: int  # 200 responses
    errors: int  # other statuses + transport errors reported by hey
    p50_ms: float | None
    p99_ms: float | None

    @property
    def requests_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def images_per_second(self) -> float:
        return self.requests_per_second * self.images_per_request


@dataclass(frozen=True)
class HeySummary:
    seconds: float
    statuses: dict[int, int]
    errors: int
    latency_ms: dict[int, float]  # percentile → ms


def require_hey() -> None:
    if shutil.which(HEY) is None:
        raise SystemExit("error: the hey load generator is missing; install it with: apt-get install -y hey")


def serve(repository: Path, tmp: Path, batching: bool, device: str = "cpu") -> Server:
    """The real service (`python -m service`, gunicorn and all), ready to answer."""
    env = {
        # Batching on: the service default (64), or $MAX_BATCH_SIZE (a GPU wants bigger merged batches).
        "MAX_BATCH_SIZE": (os.environ.get("MAX_BATCH_SIZE") or "64") if batching else "1", "LOG_LEVEL": "warning", "DEVICE": device,
        # tests.server pins 2 workers for tests; a benchmark wants the service's own default.
        "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY") or str(Settings().web_concurrency),
    }
    return start_server(repository, tmp, **env)


def check(url: str, payload: Payload) -> None:
    """One request first: a wrong body should fail loudly here, not as thousands of 4xx in hey."""
    response = requests.post(url + payload.path, data=payload.body, timeout=30,
                             headers={"Content-Type": payload.content_type} | payload.headers)
    if response.status_code != 200:
        raise RuntimeError(f"{payload.scenario}: HTTP {response.status_code}: {response.text[:500]}")


def hey(url: str, payload: Payload, tmp: Path, *limits: str, timeout: float) -> HeySummary:
    """Run hey with the given limits (-z … or -n …) and -c; parse its text summary."""
    command = [HEY, *limits, "-m", "POST", "-T", payload.content_type, "-D", str(write(payload, tmp))]
    for name, value in payload.headers.items():
        command += ["-H", f"{name}: {value}"]
    result = subprocess.run(command + [url + payload.path], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"hey failed ({result.returncode}): {result.stderr or result.stdout}")
    return parse_hey(result.stdout)


def parse_hey(text: str) -> HeySummary:
    total = re.search(r"Total:\s+([\d.]+) secs", text)
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
    # Error lines look like "[12]\tPost ...: connection refused" in the Error distribution section.
    errors_section = text.split("Error distribution:", 1)[1] if "Error distribution:" in text else ""
    errors = sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]", errors_section, re.MULTILINE))
    latency = {int(p): float(s) * 1000 for p, s in re.findall(r"(\d+)%+ in ([\d.]+) secs", text)}
    return HeySummary(float(total.group(1)) if total else 0.0, statuses, errors, latency)


def measure_load(url: str, payload: Payload, batching: bool, concurrency: int, duration: float, tmp: Path) -> LoadResult:
    """hey for a bounded time (-z) at one concurrency; in-flight requests finish after it."""
    summary = hey(url, payload, tmp, "-z", f"{duration:g}s", "-c", str(concurrency), timeout=duration + 60)
    ok = summary.statuses.get(200, 0)
    errors = sum(summary.statuses.values()) - ok + summary.errors
    return LoadResult(payload.scenario, batching, concurrency, payload.images, summary.seconds, ok, errors,
                      summary.latency_ms.get(50), summary.latency_ms.get(99))
