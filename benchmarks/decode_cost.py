"""python -m benchmarks.decode_cost: what the worst images cost a worker and its decoder processes.

On the real service with WEB_CONCURRENCY=1 (default threads and decoder settings), CPU and
added peak RSS of the worker and its decoders together (benchmarks/process_cost.py):

  memory  three concurrent requests of one worst-case image each, just under the pixel caps,
          on a fresh server per row. Target: at most 150 MB added per concurrent request, all
          processes together.
  cpu     one request of up to MAX_REQUEST_BYTES, as many of those images as fit the limits.
          Target: at most 2 s of CPU. `--sample N` sends N images and scales up.
  bombs   issue 20's decoder bombs (tests/hostile_images.py: progressive JPEGs, floods of GIF
          comments, PNG chunks and TIFF strips), one request of each, then `--concurrent` at
          once, and the costliest request the in-process fast path admits. Same targets.
  corpus  every item of the hostile corpus, one request each on one server: the worst CPU and
          added peak RSS of any request.

Figures, not a test: it prints tables and the caps it assumed; nothing fails on a miss.
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

from benchmarks.process_cost import Tally
from benchmarks.worst_images import encode, side_under, worst_images
from service.settings import Settings
from tests.harness import ROOT, start_server
from tests.hostile_images import _chunk, decoder_bombs, specs

RSS_TARGET_MB, CPU_TARGET_S = 150, 2.0
CONCURRENT = 3
MULTIPART_OVERHEAD = 200  # bytes of part headers per file, with a short file name
TIMEOUT = 900
WARM_UP = encode(Image.new("L", (28, 28)), "PNG")


def _post(url: str, images: list[bytes]) -> str:
    files = [("image", (f"{i}.img", data)) for i, data in enumerate(images)]
    try:
        return str(requests.post(f"{url}/v1/classify", files=files, timeout=TIMEOUT).status_code)
    except requests.ConnectionError:  # before issue 20, gunicorn killed a worker silent for 60 s
        return "no answer"


def _measure_on(server, concurrent_requests: list[list[bytes]]) -> tuple[float, float, str]:
    (pid,) = server.workers()
    tally = Tally(pid, getattr(Settings(), "decode_processes", 0))
    with ThreadPoolExecutor(len(concurrent_requests)) as pool:
        statuses = sorted(set(pool.map(lambda images: _post(server.url, images), concurrent_requests)))
    alive = server.workers() == [pid]
    try:
        cpu, added = tally.stop()
    except OSError:  # the worker is gone, and its figures with it
        cpu = added = float("nan")
    return added, cpu, " ".join(statuses) + ("" if alive else ", the worker was killed")


def _server(repository: Path, tmp: Path):
    server = start_server(repository, tmp, WEB_CONCURRENCY="1")
    if _post(server.url, [WARM_UP]) != "200":  # first-request allocations are not the images' cost
        server.stop()
        raise RuntimeError(f"warm-up request failed:\n{server.output()[-2000:]}")
    return server


def measure(repository: Path, tmp: Path, concurrent_requests: list[list[bytes]]) -> tuple[float, float, str]:
    """(added peak RSS MB, CPU s, statuses) of a fresh one-worker server answering these requests at once."""
    server = _server(repository, tmp)
    try:
        return _measure_on(server, concurrent_requests)
    finally:
        server.stop()


def _size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def fast_path_worst() -> list[bytes]:
    """The costliest request the fast path admits: 16 KiB PNGs of empty chunks, 256 KiB of them (service/decode/admit.py)."""
    image = encode(Image.new("L", (256, 256)), "PNG")
    empty = _chunk(b"prVt", b"")
    flood = image[:33] + empty * ((16 * 1024 - len(image)) // len(empty)) + image[33:]
    return [flood] * (256 * 1024 // len(flood))


def _row(kind: str, what: str, request: str, added: float, cpu: float, statuses: str, worst: dict,
         full: float | None = None, requests: int = 1) -> None:
    """A table row; the worst figures are per request (a row of concurrent requests shares its figures out)."""
    worst["memory"] = max(worst["memory"], added / requests)
    worst["cpu"] = max(worst["cpu"], (cpu if full is None else full) / requests)
    scaled = "" if full is None else f"{full:.1f}"
    print(f"| {kind} | {what} | {request} | {added:,.0f} | {cpu:.2f} | {scaled} | {statuses} |", flush=True)


def worst_rows(repository: Path, tmp: Path, args, worst: dict) -> None:
    defaults = Settings()
    request_cap, max_bytes, max_images = args.max_request_pixels, defaults.max_request_bytes, defaults.max_batch_images
    pixels = min(args.max_image_pixels, request_cap or args.max_image_pixels)  # one image must fit both caps
    for kind, data in worst_images(pixels).items():
        if args.only in (None, "memory"):
            added, cpu, statuses = measure(repository, tmp, [[data]] * CONCURRENT)
            _row("memory", kind, f"{CONCURRENT} concurrent × 1 image of {_size(len(data))}", added, cpu, statuses, worst,
                 requests=CONCURRENT)
        if args.only in (None, "cpu"):
            count = min(max_images, max_bytes // (len(data) + MULTIPART_OVERHEAD))
            if request_cap:
                count = min(count, request_cap // side_under(pixels) ** 2)
            sent = min(count, args.sample or count)
            added, cpu, statuses = measure(repository, tmp, [[data] * sent])
            of = f" of {count}" if sent < count else ""
            _row("cpu", kind, f"1 request × {sent}{of} images, {_size(sent * len(data))}", added, cpu, statuses, worst, cpu * count / sent)


def bomb_rows(repository: Path, tmp: Path, concurrent: int, worst: dict) -> None:
    for spec in decoder_bombs():
        data = spec.build()
        added, cpu, statuses = measure(repository, tmp, [[data]])
        _row("bomb", spec.name, f"1 image of {_size(len(data))}", added, cpu, statuses, worst)
        if concurrent > 1:
            added, cpu, statuses = measure(repository, tmp, [[data]] * concurrent)
            _row("bomb", spec.name, f"{concurrent} concurrent × 1 image", added, cpu, statuses, worst, requests=concurrent)
    flood = fast_path_worst()
    added, cpu, statuses = measure(repository, tmp, [flood])
    _row("bomb", "fast path: PNGs of empty chunks", f"1 request × {len(flood)} images, {_size(sum(map(len, flood)))}", added, cpu, statuses, worst)


def corpus_rows(repository: Path, tmp: Path, args, worst: dict) -> None:
    server = _server(repository, tmp)
    try:
        costliest = {"cpu": (0.0, ""), "memory": (0.0, "")}
        items = specs(args.max_image_pixels, args.max_request_pixels)
        for spec in items:
            item = spec.item()
            added, cpu, _ = _measure_on(server, [[item.data] * item.copies])
            costliest["cpu"] = max(costliest["cpu"], (cpu, item.name))
            costliest["memory"] = max(costliest["memory"], (added, item.name))
        (cpu, cpu_item), (added, memory_item) = costliest["cpu"], costliest["memory"]
        _row("corpus", f"{len(items)} items, one request each", f"costliest: {cpu_item} (CPU), {memory_item} (memory)",
             added, cpu, "", worst)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decode_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "models", help="model repository, copied first (default: models)")
    parser.add_argument("--max-image-pixels", type=int, default=defaults.max_image_pixels)
    parser.add_argument("--max-request-pixels", type=int, default=getattr(defaults, "max_request_pixels", None))
    parser.add_argument("--only", choices=("memory", "cpu", "bombs", "corpus"), help="one of the measurements")
    parser.add_argument("--sample", type=int, help="cpu: send at most this many images and scale the CPU up to a full request")
    parser.add_argument("--concurrent", type=int, default=CONCURRENT, help="bombs: requests of each at once (default 3)")
    args = parser.parse_args(argv)

    print(f"caps: MAX_IMAGE_PIXELS {args.max_image_pixels:,}, MAX_REQUEST_PIXELS {args.max_request_pixels or 'none'}, "
          f"MAX_REQUEST_BYTES {defaults.max_request_bytes:,}, MAX_BATCH_IMAGES {defaults.max_batch_images}; "
          f"decoders: {', '.join(f'{k.upper()} {v}' for k, v in defaults.model_dump().items() if k.startswith('decode_')) or 'none'}; "
          f"1 worker; {os.cpu_count()} CPUs")
    print(f"targets per request (concurrent ones share a row's figures): ≤ {RSS_TARGET_MB} MB added peak RSS, "
          f"≤ {CPU_TARGET_S:g} s CPU (worker and decoders together)\n")
    print("| measurement | kind | request | added peak RSS (MB) | CPU (s) | CPU of a full request (s) | statuses |")
    print("|---|---|---|---:|---:|---:|---|", flush=True)
    worst = {"memory": 0.0, "cpu": 0.0}
    with tempfile.TemporaryDirectory(prefix="decode-cost-") as tmp:
        repository = Path(tmp) / "models"
        shutil.copytree(args.repository, repository, ignore=shutil.ignore_patterns(".lock", ".reports"))
        if args.only in (None, "memory", "cpu"):
            worst_rows(repository, Path(tmp), args, worst)
        if args.only in (None, "bombs"):
            bomb_rows(repository, Path(tmp), args.concurrent, worst)
        if args.only in (None, "corpus"):
            corpus_rows(repository, Path(tmp), args, worst)
    print(f"\nworst per request: {worst['memory']:,.0f} MB added peak RSS (target {RSS_TARGET_MB}), "
          f"{worst['cpu']:.2f} s CPU (target {CPU_TARGET_S:g})")


if __name__ == "__main__":
    main()
