"""Does an int8 model score the same on every CPU? `python -m training.cpu_check MODEL.onnx...`

onnxruntime runs a QDQ int8 graph with integer kernels picked by CPUID: AVX2 (vpmaddubsw,
whose 16-bit pair sums saturate for uint8×int8 unless the weights use 7 bits), AVX-VNNI or
AVX-512 VNNI (vpdpbusd, exact 32-bit sums) or AMX. With graph optimizations off, the same file
runs as dequantize → float op → quantize instead: no integer kernel, the same on any CPU, and
what an exact kernel computes up to float rounding. So a model whose optimized predictions
match its unoptimized ones on this CPU scores the same on a VNNI CPU too; one that does not
depends on the CPU. Run it natively, or under qemu-user to see another CPU's kernels
(scripts/int8_cpu_check.sh). Prints JSON; exits 1 when a model's predictions differ on more
than --max-differences images.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from training.data import load_data

# onnxruntime is imported where a model runs, so that `--help` answers without loading it.

TIMING_BATCHES = (1, 64)


def check(model: Path, images: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy with this CPU's kernels and as float QDQ, and where their predictions differ."""
    import onnxruntime as ort  # noqa: PLC0415

    from training.evaluate import predict_onnx  # noqa: PLC0415

    fused = predict_onnx(model, images).argmax(1)
    reference = predict_onnx(model, images, optimization=ort.GraphOptimizationLevel.ORT_DISABLE_ALL).argmax(1)
    differ = np.flatnonzero(fused != reference)
    return {
        "model": str(model),
        "images": len(images),
        "accuracy": float((fused == labels).mean()),
        "accuracy_float_qdq": float((reference == labels).mean()),
        "differences": int(differ.size),
        "first_differences": differ[:20].tolist(),
    }


def images_per_second(models: list[Path], images: np.ndarray, batch: int, rounds: int = 7, window: float = 0.5) -> list[float]:
    """Median throughput of one session per model at a batch size. The models take turns,
    window by window, so that load from other processes falls on all of them alike."""
    import onnxruntime as ort  # noqa: PLC0415

    sessions = [ort.InferenceSession(str(m), providers=["CPUExecutionProvider"]) for m in models]
    feeds = [{s.get_inputs()[0].name: images[:batch]} for s in sessions]
    for session, feed in zip(sessions, feeds):
        for _ in range(3):  # warm-up: first runs allocate and pick kernels
            session.run(None, feed)
    rates: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for session, feed, rate in zip(sessions, feeds, rates):
            runs, started = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - started) < window:
                session.run(None, feed)
                runs += 1
            rate.append(runs * batch / elapsed)
    return [float(np.median(r)) for r in rates]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.cpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("models", type=Path, nargs="+", help="model.onnx files (int8 QDQ; an fp32 one makes a reference)")
    parser.add_argument("--images", type=int, default=10_000, help="first N test images (emulation runs ~9 images/s)")
    parser.add_argument("--only", type=Path, default=None, help="a .npy of test-image indices to check instead")
    parser.add_argument("--max-differences", type=int, default=0, help="allowed prediction differences (default %(default)s)")
    parser.add_argument("--timing", action="store_true", help="also measure images/s at batch 1 and 64")
    args = parser.parse_args(argv)

    from training.hardware import hardware  # noqa: PLC0415  (onnxruntime's version)

    test = load_data().test
    index = np.load(args.only) if args.only else np.arange(min(args.images, len(test)))
    results = {"hardware": hardware(), "models": [check(m, test.images[index], test.labels[index]) for m in args.models]}
    if args.only:
        for result in results["models"]:  # report indices into the test split, not into the subset
            result["first_differences"] = index[result["first_differences"]].tolist()
    if args.timing:
        for batch in TIMING_BATCHES:
            for result, rate in zip(results["models"], images_per_second(args.models, test.images, batch)):
                result.setdefault("images_per_second", {})[str(batch)] = round(rate, 1)
    print(json.dumps(results, indent=2))
    return 1 if any(r["differences"] > args.max_differences for r in results["models"]) else 0


if __name__ == "__main__":
    sys.exit(main())
