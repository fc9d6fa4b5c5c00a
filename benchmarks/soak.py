"""`python -m benchmarks.soak [--duration 600]`: mixed traffic at ~80% of capacity while operators work.

For the whole run: /v1 PNG, v2 JSON and v2 binary requests paced at a fraction of the capacity
measured first, /metrics scrapes every second, an admin load or unload every few seconds, and a
new version of the served model published (and old ones pruned) every 20 s. The images come
from the whole test split, so the class mix is the reference's (the drift alerts must stay
silent). With capture on (the default; benchmarks/soak_capture.py): true labels through
/v1/feedback twice a second, the store's size read every 5 s against CAPTURE_MAX_ROWS, and with
`--store postgresql --stop-store-at S` the store stopped for `--outage` seconds mid-run. It
reports requests, errors (the target is none), latency, each worker's RSS after warm-up and at
the end (the target is under 5% growth over 10 minutes), the store's size, the captures dropped
and the drift the alerts would see. CI runs a 60-second variant.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import requests

import modelrepo
from benchmarks.payloads import Payload, payloads, test_images
from benchmarks.soak_capture import CaptureSoak
from tests.harness import ROOT, rss_mb, start_server

MODEL, SPARE = "fashion-mnist", "fashion-mnist-int8"
TOKEN = "soak-token"
CLIENTS = 6
SOAK_BATCH = 8  # images per v2 binary request: small enough that single-image requests still make most of the load
PUBLISH_EVERY, ADMIN_EVERY, SCRAPE_EVERY = 20.0, 3.0, 1.0
# Bodies made from this many test images (a stride through them), so the class mix is the split's.
SOAK_IMAGES, SOAK_OFFSETS = 2000, 250


class Tally:
    """Outcomes by kind of request, from many threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: Counter = Counter()
        self.versions: Counter = Counter()

    def record(self, kind: str, seconds: float, ok: bool, detail: str = "", version: str | None = None) -> None:
        with self.lock:
            self.latency[kind].append(seconds)
            if not ok:
                self.errors[f"{kind}: {detail}"[:160]] += 1
            if version:
                self.versions[version] += 1


def _send(session: requests.Session, url: str, payload: Payload) -> requests.Response:
    return session.post(url + payload.path, data=payload.body, timeout=30,
                        headers={"Content-Type": payload.content_type} | payload.headers)


def _version(response: requests.Response) -> str | None:
    if response.headers.get("Content-Type", "").startswith("application/json"):
        return response.json().get("model_version")
    return None  # binary responses carry it in their JSON head; the others count versions


def measure_capacity(url: str, bodies: list[Payload], seconds: float = 5.0) -> float:
    """Requests per second the mix gets with CLIENTS closed-loop clients."""
    done, stop = [], time.monotonic() + seconds

    def client(i: int) -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                _send(session, url, bodies[(i + len(done)) % len(bodies)]).raise_for_status()
                done.append(1)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(done) / seconds


def traffic(url: str, bodies: list[Payload], rate: float, until: float, tally: Tally) -> list[threading.Thread]:
    """CLIENTS threads that together send `rate` requests per second, each on its own schedule."""
    interval = CLIENTS / rate

    def client(i: int) -> None:
        next_at = time.monotonic() + i * interval / CLIENTS
        with requests.Session() as session:
            for n in range(10**9):
                if (now := time.monotonic()) >= until:
                    return
                time.sleep(max(0.0, next_at - now))
                next_at += interval
                payload = bodies[(i + n) % len(bodies)]
                started = time.monotonic()
                try:
                    response = _send(session, url, payload)
                    tally.record(payload.scenario, time.monotonic() - started, response.status_code == 200,
                                 f"HTTP {response.status_code} {response.text[:80]}", _version(response))
                except requests.RequestException as exc:
                    tally.record(payload.scenario, time.monotonic() - started, False, type(exc).__name__)

    return [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]


def operators(url: str, repository: Path, until: float, tally: Tally) -> list[threading.Thread]:
    """Scrapes, admin calls and publishes, each on its own clock."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # Read once: the version they come from is pruned by the third publish.
    source = modelrepo.version_dir(repository, MODEL, modelrepo.newest_version(repository, MODEL))
    model, metadata = (source / modelrepo.MODEL_FILE).read_bytes(), modelrepo.read_metadata(source)

    def every(seconds: float, kind: str, action) -> threading.Thread:
        def loop() -> None:
            n = 0
            while time.monotonic() + seconds < until:
                time.sleep(seconds)
                started = time.monotonic()
                try:
                    ok, detail = action(n)
                except Exception as exc:  # a soak reports every failure, it never stops on one
                    ok, detail = False, f"{type(exc).__name__}: {exc}"
                tally.record(kind, time.monotonic() - started, ok, detail)
                n += 1
        return threading.Thread(target=loop, daemon=True)

    def scrape(_: int):
        response = requests.get(f"{url}/metrics", timeout=10)
        return response.status_code == 200 and "serving_requests_total" in response.text, f"HTTP {response.status_code}"

    def admin(n: int):
        # The spare model is unloaded and loaded in turn; every third call re-follows the newest
        # version of the model that takes the traffic (a no-op that goes through every worker).
        path = [f"{SPARE}/unload", f"{SPARE}/load", f"{MODEL}/load"][n % 3]
        response = requests.post(f"{url}/v2/repository/models/{path}", headers=auth, timeout=30)
        return response.status_code == 200, f"{path}: HTTP {response.status_code} {response.text[:80]}"

    def publish(_: int):
        with tempfile.TemporaryDirectory() as staging:
            (Path(staging) / modelrepo.MODEL_FILE).write_bytes(model)
            version = modelrepo.publish(repository, MODEL, Path(staging), metadata)
        modelrepo.prune(repository, MODEL, keep=3)
        return True, f"published {version}"

    return [every(SCRAPE_EVERY, "metrics scrape", scrape), every(ADMIN_EVERY, "admin", admin), every(PUBLISH_EVERY, "publish", publish)]


def bodies_from_the_split() -> list[Payload]:
    """Every kind of body for SOAK_OFFSETS images spread over the first SOAK_IMAGES of the test split."""
    images, step = test_images(SOAK_IMAGES), SOAK_IMAGES // SOAK_OFFSETS
    return [body for start in range(0, SOAK_IMAGES - SOAK_BATCH, step) for body in payloads(images[start:], MODEL, batch=SOAK_BATCH)]


def run(duration: float, fraction: float, warm_up: float, capture: bool = True, store: str = "sqlite",
        stop_store_at: float | None = None, outage: float = 30.0, max_rows: int = 20_000) -> dict:
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp_name:
        tmp = Path(tmp_name)
        repository = tmp / "models"
        shutil.copytree(ROOT / "models", repository, ignore=shutil.ignore_patterns(".lock", ".reports"))
        captured = CaptureSoak(capture, store, tmp, max_rows, prune_seconds=5.0)
        server = start_server(repository, tmp, ADMIN_TOKEN=TOKEN, RELOAD_POLL_SECONDS="2", LOG_LEVEL="warning", **captured.env())
        try:
            bodies = bodies_from_the_split()
            capacity = measure_capacity(server.url, bodies)
            tally, started = Tally(), time.monotonic()
            until = started + duration
            threads = (traffic(server.url, bodies, capacity * fraction, until, tally) + operators(server.url, repository, until, tally)
                       + captured.threads(server.url, until, tally, stop_store_at, outage))
            for t in threads:
                t.start()
            time.sleep(min(warm_up, duration / 2))
            workers = server.workers()
            rss_start = {pid: rss_mb(pid) for pid in workers}
            for t in threads:
                t.join()
            rss_end = {pid: rss_mb(pid) for pid in server.workers() if pid in rss_start}
            captured.elapsed = time.monotonic() - started
            capture_lines, capture_ok = captured.summary(server.url, len(workers))
            return {"duration": duration, "capacity": capacity, "rate": capacity * fraction, "tally": tally,
                    "rss_start": rss_start, "rss_end": rss_end, "workers_replaced": sorted(set(workers) - set(rss_end)),
                    "elapsed": time.monotonic() - started, "capture": capture_lines, "capture_ok": capture_ok}
        finally:
            server.stop()
            captured.close()


def report(result: dict) -> str:
    tally: Tally = result["tally"]
    lines = [f"soak: {result['duration']:.0f} s, capacity {result['capacity']:.0f} req/s measured first, "
             f"traffic paced at {result['rate']:.0f} req/s with {CLIENTS} clients",
             "", "| kind | requests | errors | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    for kind, seconds in sorted(tally.latency.items()):
        errors = sum(n for key, n in tally.errors.items() if key.startswith(kind + ":"))
        p50, p99 = np.percentile(seconds, [50, 99]) * 1000
        lines.append(f"| {kind} | {len(seconds)} | {errors} | {p50:.1f} | {p99:.1f} |")
    lines += ["", "| worker pid | RSS MB after warm-up | RSS MB at the end | growth |", "|---|---:|---:|---:|"]
    for pid, start in result["rss_start"].items():
        end = result["rss_end"].get(pid)
        lines.append(f"| {pid} | {start:.1f} | {'replaced' if end is None else f'{end:.1f}'} | "
                     f"{'-' if end is None else f'{(end - start) / start:+.1%}'} |")
    lines += [""] + result["capture"]
    lines += ["", f"versions that answered: {dict(sorted(tally.versions.items(), key=lambda kv: int(kv[0])))}",
              f"errors: {sum(tally.errors.values())}" + "".join(f"\n  {n} × {key}" for key, n in tally.errors.most_common(10))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--fraction", type=float, default=0.8, help="share of the measured capacity (default 0.8)")
    parser.add_argument("--warm-up", type=float, default=60.0, help="seconds before the first RSS reading (default 60)")
    parser.add_argument("--capture", choices=["on", "off"], default="on", help="capture and feedback (default on)")
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite",
                        help="the capture store: an SQLite file, or a throwaway PostgreSQL (default sqlite)")
    parser.add_argument("--stop-store-at", type=float, default=None,
                        help="with --store postgresql: stop the store this many seconds into the run")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the store stays stopped (default 30)")
    parser.add_argument("--max-rows", type=int, default=20_000, help="CAPTURE_MAX_ROWS (default 20000)")
    args = parser.parse_args(argv)
    result = run(args.duration, args.fraction, args.warm_up, args.capture == "on", args.store, args.stop_store_at,
                 args.outage, args.max_rows)
    print(report(result))
    return 1 if result["tally"].errors or result["workers_replaced"] or not result["capture_ok"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
