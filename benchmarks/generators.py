"""Load generators behind one Summary: wrk (the default: one thread, less CPU per request) and hey.

Both run on this machine against loopback, bounded in time, and share its cores with the server.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from benchmarks.payloads import Payload, write

INSTALL = {"wrk": "apt-get install -y wrk", "hey": "apt-get install -y hey"}
WRK_SCRIPT = Path(__file__).with_name("wrk.lua")
# A request slower than this counts as a wrk timeout error; far longer than any sane response.
WRK_TIMEOUT_S = 60


@dataclass(frozen=True)
class Summary:
    seconds: float
    ok: int  # 2xx responses (wrk: 2xx or 3xx)
    errors: int  # other statuses + socket errors (connect, read, write, timeout)
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class HeySummary:
    seconds: float
    statuses: dict[int, int]
    errors: int
    latency_ms: dict[int, float]  # percentile → ms


def require(name: str) -> None:
    """Fail fast, with the install command, when a load generator is missing."""
    if shutil.which(name) is None:
        raise SystemExit(f"error: the {name} load generator is missing; install it with: {INSTALL[name]}")


def run_wrk(url: str, payload: Payload, tmp: Path, concurrency: int, duration: float) -> Summary:
    """wrk, one thread, `concurrency` keep-alive connections, for whole seconds (wrk's unit).

    wrk stops at the deadline and drops the requests in flight (hey waits for them): the caller
    lets the server settle before the next run.
    """
    seconds = max(1, round(duration))
    env = os.environ | {"WRK_BODY_FILE": str(write(payload, tmp)), "WRK_CONTENT_TYPE": payload.content_type,
                        "WRK_HEADERS": "\n".join(f"{name}: {value}" for name, value in payload.headers.items())}
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", f"--timeout={WRK_TIMEOUT_S}s",
               "-s", str(WRK_SCRIPT), url + payload.path]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + 60)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
    return parse_wrk(result.stdout)


def parse_wrk(text: str) -> Summary:
    """The JSON line that wrk.lua's done() prints."""
    line = next((line for line in text.splitlines() if line.startswith("WRK_SUMMARY ")), None)
    if line is None:
        raise RuntimeError(f"no WRK_SUMMARY line in wrk's output:\n{text}")
    s = json.loads(line.split(" ", 1)[1])
    errors = s["status"] + s["connect"] + s["read"] + s["write"] + s["timeout"]
    p50, p99 = (s["p50_us"] / 1000, s["p99_us"] / 1000) if s["requests"] else (None, None)
    return Summary(s["duration_us"] / 1e6, int(s["requests"] - s["status"]), int(errors), p50, p99)


def hey(url: str, payload: Payload, tmp: Path, *limits: str, timeout: float) -> HeySummary:
    """Run hey with the given limits (-z … or -n …) and -c; parse its text summary."""
    command = ["hey", *limits, "-m", "POST", "-T", payload.content_type, "-D", str(write(payload, tmp))]
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


def run_hey(url: str, payload: Payload, tmp: Path, concurrency: int, duration: float) -> Summary:
    """hey -z: a bounded time; the requests in flight at the deadline still finish."""
    summary = hey(url, payload, tmp, "-z", f"{duration:g}s", "-c", str(concurrency), timeout=duration + 60)
    ok = summary.statuses.get(200, 0)
    return Summary(summary.seconds, ok, sum(summary.statuses.values()) - ok + summary.errors,
                   summary.latency_ms.get(50), summary.latency_ms.get(99))


RUNNERS: dict[str, Callable[[str, Payload, Path, int, float], Summary]] = {"wrk": run_wrk, "hey": run_hey}
