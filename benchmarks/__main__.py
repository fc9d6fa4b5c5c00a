"""python -m benchmarks [--repository models] [--duration 5] [--concurrency 1,8,32] [--out benchmarks/results.md] [--quick] [--memory]"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks import load, memory, payloads, raw, report

MODELS = {"fp32": "fashion-mnist", "int8": "fashion-mnist-int8"}
RAW_BATCHES = (1, 64)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Raw onnxruntime vs. the service under hey load.")
    parser.add_argument("--repository", type=Path, default=Path("models"), help="model repository (default: models)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default: 5)")
    parser.add_argument("--concurrency", default="1,8,32", help="hey concurrencies, comma-separated (default: 1,8,32)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.md"), help="results file (default: benchmarks/results.md)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="onnxruntime device (default: cpu)")
    parser.add_argument("--memory", action="store_true", help="also measure worker RSS over two rounds of requests")
    parser.add_argument("--memory-requests", type=int, default=memory.REQUESTS, help="requests per memory round (default: 10000)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s, concurrency 1 and 8, no memory")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if args.quick:
        args.duration, args.concurrency, args.memory = 1.0, [1, 8], False
    return args


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    load.require_hey()
    images = payloads.test_images()
    bodies = payloads.payloads(images)

    raw_results = []
    for model, name in MODELS.items():
        path = raw.newest_model(args.repository, name)
        for batch in RAW_BATCHES:
            raw_results.append(result := raw.measure_raw(path, model, images, batch, args.duration, args.device))
            print(f"raw {model} batch {batch}: {result.images_per_second:.0f} img/s", file=sys.stderr, flush=True)

    load_results, memory_result, workers = [], None, None
    with tempfile.TemporaryDirectory(prefix="benchmarks-") as tmp_name:
        tmp = Path(tmp_name)
        for batching in (True, False):
            server = load.serve(args.repository.resolve(), tmp, batching, args.device)
            try:
                workers = len(memory.workers(server.process.pid))
                for payload in bodies:
                    load.check(server.url, payload)
                    for concurrency in args.concurrency:
                        load_results.append(result := load.measure_load(server.url, payload, batching, concurrency, args.duration, tmp))
                        print(f"service {payload.scenario} batching {'on' if batching else 'off'} c={concurrency}: "
                              f"{result.images_per_second:.0f} img/s, {result.errors} errors", file=sys.stderr, flush=True)
            finally:
                server.stop()
        if args.memory:
            server = load.serve(args.repository.resolve(), tmp, batching=True, device=args.device)
            try:
                memory_result = memory.measure_memory(server.url, server.process.pid, bodies[0], tmp, args.memory_requests)
            finally:
                server.stop()

    notes = [f"device: {args.device}; raw: intra-op threads = all cores, {args.duration:g} s per run after warm-up",
             f"service: `python -m service`, {workers} gunicorn workers, batching on = MAX_BATCH_SIZE 64, off = 1; "
             f"hey -z {args.duration:g}s per row, on the same machine (hey's CPU use competes with the service)",
             "ratio = img/s ÷ best raw fp32 img/s (batch 1 or 64); errors = non-200 responses + hey errors"]
    text = report.document(raw_results, load_results, memory_result, notes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(report.table(raw_results, load_results))
    if memory_result:
        print("\n" + report.memory_table(memory_result))
    print(f"\nwritten to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
