"""python -m benchmarks [--repository models] [--duration 5] [--concurrency 1,8,32] [--load-generator wrk|hey]
[--naive-workers N] [--out benchmarks/results.md] [--baseline CHECKOUT] [--quick] [--memory]"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

from benchmarks import generators, load, memory, payloads, raw, report, servers

MODELS = {"fp32": "fashion-mnist", "int8": "fashion-mnist-int8"}
RAW_BATCHES = (1, 64)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description="Raw onnxruntime vs. the naive Flask baseline vs. the service, under load.")
    parser.add_argument("--repository", type=Path, default=Path("models"), help="model repository (default: models)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement; wrk rounds to whole seconds (default: 5)")
    parser.add_argument("--concurrency", default="1,8,32", help="connections, comma-separated (default: 1,8,32)")
    parser.add_argument("--load-generator", choices=tuple(generators.RUNNERS), default="wrk",
                        help="wrk (one thread, cheaper per request) or hey (default: wrk)")
    parser.add_argument("--naive-workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="gunicorn sync workers of the naive baseline (default: the number of cores)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.md"), help="results file (default: benchmarks/results.md)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="onnxruntime device (default: cpu)")
    parser.add_argument("--memory", action="store_true", help="also measure worker RSS over two rounds of requests (needs hey)")
    parser.add_argument("--memory-requests", type=int, default=memory.REQUESTS, help="requests per memory round (default: 10000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each row is their median (default: 3)")
    parser.add_argument("--batching", default="on,off", help="the service's rows: batching on, off or both (default: on,off)")
    parser.add_argument("--baseline", type=Path, help="another checkout (a worktree of main, say): its service runs too, "
                                                      "batching on, as kind 'baseline', its rows beside ours in every round")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s, concurrency 1 and 8, one round, no memory")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.batching = [{"on": True, "off": False}[b.strip()] for b in args.batching.split(",") if b.strip()]
    if args.quick:
        args.duration, args.concurrency, args.memory, args.rounds = 1.0, [1, 8], False, 1
    return args


def describe(args: argparse.Namespace, workers: int | None) -> list[str]:
    """The notes above the table: what each row ran and how the ratios are taken."""
    generator = {"wrk": f"wrk -t1 -c<concurrency> -d{max(1, round(args.duration))}s (`benchmarks/wrk.lua` posts the body; "
                        f"a run in which fewer than {load.MIN_PER_CONNECTION} requests per connection completed is redone "
                        f"longer, up to {load.MAX_STRETCH}×)",
                 "hey": f"hey -z {args.duration:g}s -c <concurrency>"}[args.load_generator]
    return [f"device: {args.device}; raw: intra-op threads = all cores, {args.duration:g} s per run after warm-up",
            f"service: `python -m service`, {workers} gunicorn workers, batching on = MAX_BATCH_SIZE "
            f"{os.environ.get('MAX_BATCH_SIZE') or 64}, off = 1",
            f"naive: `benchmarks/naive_app.py`, gunicorn -w {args.naive_workers} -k sync, one onnxruntime session per worker "
            "(1 intra-op thread), Flask JSON; body {\"instances\": [...]} with the same pixels as the v2 JSON",
            f"load: {generator} per run, after a 1 s warm-up per scenario and with the server idle; the naive app and the "
            f"service with batching on and off all run at once, their rows back to back at each concurrency, for "
            f"{args.rounds} round(s): each row is the median round, `img/s by round` shows them all (the host drifts "
            "by 20% within minutes); on the same machine, so the load generator's CPU use competes with the server",
            "vs raw = img/s ÷ raw fp32 img/s (batch 64 for 64-image rows, else the best batch size); "
            "vs naive = img/s ÷ the naive app's img/s at the same concurrency and images per request "
            "(64-image rows: its 64-image JSON)",
            "errors = non-2xx responses + socket errors (connect, read, write, timeout); CPU s per worker = what each "
            "worker process used during the row (keep-alive connections stay with one worker, so load can be uneven)"]


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    load_at_start = os.getloadavg()[0]
    generators.require(args.load_generator)
    if args.memory:
        generators.require("hey")  # memory rounds are a request count (hey -n); wrk only knows durations
    images = payloads.test_images()
    fp32_model = raw.newest_model(args.repository, MODELS["fp32"])

    raw_runs, load_runs, memory_result, workers = [], [], None, None
    with tempfile.TemporaryDirectory(prefix="benchmarks-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        targets = [load.Target("naive", None, stack.enter_context(servers.naive(fp32_model.resolve(), tmp, args.naive_workers, args.device)),
                               payloads.naive_payloads(images))]
        for batching in args.batching:
            server = stack.enter_context(servers.service(args.repository.resolve(), tmp, batching, args.device))
            targets.append(load.Target("service", batching, server, payloads.payloads(images)))
        if args.baseline:
            server = stack.enter_context(servers.service(args.repository.resolve(), tmp, True, args.device, args.baseline.resolve()))
            targets.append(load.Target("baseline", True, server, payloads.payloads(images)))
        workers = len(targets[1].server.workers())
        load.warm_up(targets, tmp, args.load_generator)
        for round_ in range(args.rounds):
            label = f"round {round_ + 1}/{args.rounds}: "
            for model, name in MODELS.items():
                path = raw.newest_model(args.repository, name)
                for batch in RAW_BATCHES:
                    raw_runs.append(result := raw.measure_raw(path, model, images, batch, args.duration, args.device))
                    print(f"{label}raw {model} batch {batch}: {result.images_per_second:.0f} img/s", file=sys.stderr, flush=True)
            load_runs += load.measure_round(targets, args.concurrency, args.duration, tmp, args.load_generator, label)
        stack.close()
        raw_results, load_results = raw.medians(raw_runs), load.medians(load_runs)
        if args.memory:
            with servers.service(args.repository.resolve(), tmp, batching=True, device=args.device) as server:
                png = payloads.payloads(images)[0]
                memory_result = memory.measure_memory(server.url, server.process.pid, png, tmp, args.memory_requests)

    notes = describe(args, workers)
    text = report.document(raw_results, load_results, memory_result, notes, load_at_start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(report.table(raw_results, load_results))
    if memory_result:
        print("\n" + report.memory_table(memory_result))
    print(f"\nwritten to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
