"""python -m benchmarks.decode_cost: what the worst images under the pixel caps cost one worker.

Issue 12's image budget, on the real service with WEB_CONCURRENCY=1 (default threads), a fresh
server per row so that every row starts from the same baseline:

  memory  three concurrent requests of one worst-case image each, just under the caps: the peak
          RSS the worker adds (VmHWM in /proc/<pid>/status, after a warm-up request vs. after the
          three). Target: at most 150 MB.
  cpu     one request of up to MAX_REQUEST_BYTES, as many of those images as fit the limits: the
          worker's CPU seconds (utime + stime in /proc/<pid>/stat). Target: at most 2 s.
          `--sample N` sends N images and scales up: without caps a full request takes minutes.

Figures, not a test: it prints a table and the caps it assumed; nothing fails on a miss.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from PIL import Image

from service.settings import Settings
from service.testing import ROOT, start_server
from benchmarks.worst_images import encode, side_under, worst_images

RSS_TARGET_MB, CPU_TARGET_S = 150, 2.0
CONCURRENT = 3
MULTIPART_OVERHEAD = 200  # bytes of part headers per file, with a short file name
TIMEOUT = 900
WARM_UP = encode(Image.new("L", (28, 28)), "PNG")


def peak_rss_mb(pid: int) -> float:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def cpu_seconds(pid: int) -> float:
    # The fields after the command name's ")": utime is [11], stime [12], in clock ticks.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _post(url: str, images: list[bytes]) -> int:
    files = [("image", (f"{i}.img", data)) for i, data in enumerate(images)]
    return requests.post(f"{url}/v1/classify", files=files, timeout=TIMEOUT).status_code


def measure(repository: Path, tmp: Path, concurrent_requests: list[list[bytes]]) -> tuple[float, float, str]:
    """(added peak RSS MB, CPU s, statuses) of a fresh one-worker server answering these requests at once."""
    server = start_server(repository, tmp, WEB_CONCURRENCY="1")
    try:
        if _post(server.url, [WARM_UP]) != 200:  # first-request allocations are not the images' cost
            raise RuntimeError(f"warm-up request failed:\n{server.output()[-2000:]}")
        (pid,) = server.workers()
        rss, cpu = peak_rss_mb(pid), cpu_seconds(pid)
        with ThreadPoolExecutor(len(concurrent_requests)) as pool:
            statuses = sorted(set(pool.map(lambda images: _post(server.url, images), concurrent_requests)))
        if server.workers() != [pid]:
            raise RuntimeError(f"the worker died or was replaced:\n{server.output()[-2000:]}")
        return peak_rss_mb(pid) - rss, cpu_seconds(pid) - cpu, " ".join(map(str, statuses))
    finally:
        server.stop()


def _size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def main(argv: list[str] | None = None) -> None:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decode_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "models", help="model repository, copied first (default: models)")
    parser.add_argument("--max-image-pixels", type=int, default=defaults.max_image_pixels)
    parser.add_argument("--max-request-pixels", type=int, default=getattr(defaults, "max_request_pixels", None))
    parser.add_argument("--only", choices=("memory", "cpu"), help="one of the two measurements")
    parser.add_argument("--sample", type=int, help="cpu: send at most this many images and scale the CPU up to a full request")
    args = parser.parse_args(argv)
    request_cap, max_bytes, max_images = args.max_request_pixels, defaults.max_request_bytes, defaults.max_batch_images
    pixels = min(args.max_image_pixels, request_cap or args.max_image_pixels)  # one image must fit both caps

    print(f"caps: MAX_IMAGE_PIXELS {args.max_image_pixels:,}, MAX_REQUEST_PIXELS {request_cap or 'none'}, MAX_REQUEST_BYTES "
          f"{max_bytes:,}, MAX_BATCH_IMAGES {max_images}; 1 worker; {os.cpu_count()} CPUs")
    print(f"targets: ≤ {RSS_TARGET_MB} MB added peak RSS for {CONCURRENT} concurrent images, ≤ {CPU_TARGET_S:g} s CPU per request\n")
    print("| measurement | kind | request | added peak RSS (MB) | worker CPU (s) | CPU of a full request (s) | statuses |")
    print("|---|---|---|---:|---:|---:|---|", flush=True)
    worst = {"memory": 0.0, "cpu": 0.0}
    with tempfile.TemporaryDirectory(prefix="decode-cost-") as tmp:
        repository = Path(tmp) / "models"
        shutil.copytree(args.repository, repository, ignore=shutil.ignore_patterns(".lock", ".reports"))
        for kind, data in worst_images(pixels).items():
            if args.only in (None, "memory"):
                added, cpu, statuses = measure(repository, Path(tmp), [[data]] * CONCURRENT)
                worst["memory"] = max(worst["memory"], added)
                request = f"{CONCURRENT} concurrent × 1 image of {_size(len(data))}"
                print(f"| memory | {kind} | {request} | {added:,.0f} | {cpu:.2f} | | {statuses} |", flush=True)
            if args.only in (None, "cpu"):
                count = min(max_images, max_bytes // (len(data) + MULTIPART_OVERHEAD))
                if request_cap:
                    count = min(count, request_cap // side_under(pixels) ** 2)
                sent = min(count, args.sample or count)
                added, cpu, statuses = measure(repository, Path(tmp), [[data] * sent])
                worst["cpu"] = max(worst["cpu"], cpu * count / sent)
                of = f" of {count}" if sent < count else ""
                print(f"| cpu | {kind} | 1 request × {sent}{of} images, {_size(sent * len(data))} | {added:,.0f} | {cpu:.2f} | "
                      f"{cpu * count / sent:.1f} | {statuses} |", flush=True)
    if args.only != "cpu":
        print(f"\nworst memory: {worst['memory']:,.0f} MB added peak RSS (target {RSS_TARGET_MB})")
    if args.only != "memory":
        print(f"worst cpu: {worst['cpu']:.1f} s CPU per request (target {CPU_TARGET_S:g})")


if __name__ == "__main__":
    main()
