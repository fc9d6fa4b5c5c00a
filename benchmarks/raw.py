"""Raw onnxruntime throughput: the best the hardware does with no HTTP, JSON or batching around it."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

import modelrepo
from service.device import providers

WARM_UP_SECONDS = 0.2


@dataclass(frozen=True)
class RawResult:
    model: str  # "fp32" or "int8"
    batch: int
    runs: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def images_per_second(self) -> float:
        return self.batch * self.runs / self.seconds


def newest_model(repository: Path, name: str) -> Path:
    version = modelrepo.newest_version(repository, name)
    if version is None:
        raise SystemExit(f"error: no version of {name!r} in {repository}")
    return modelrepo.version_dir(repository, name, version) / modelrepo.MODEL_FILE


def session(path: Path, device: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # All cores for one session: the ceiling, not the service's per-worker share.
    options.intra_op_num_threads = len(os.sched_getaffinity(0))
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The service's own provider choice (preloads the CUDA libraries, fails clearly without them).
    return ort.InferenceSession(str(path), options, providers=providers(device))


def measure_raw(path: Path, model: str, images: np.ndarray, batch: int, duration: float, device: str = "cpu") -> RawResult:
    """Run one batch size back to back for ~duration seconds, after a short warm-up."""
    sess = session(path, device)
    feed = {sess.get_inputs()[0].name: np.ascontiguousarray(images[:batch])}
    # Warm-up: first runs allocate buffers and pick kernels; they are not steady-state speed.
    end = time.perf_counter() + WARM_UP_SECONDS
    while time.perf_counter() < end:
        sess.run(None, feed)
    latencies = []
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < duration:
        sess.run(None, feed)
        latencies.append(time.perf_counter() - now)
    seconds = time.perf_counter() - start
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return RawResult(model, batch, len(latencies), seconds, float(p50), float(p99))


def medians(results: list[RawResult]) -> list[RawResult]:
    """One result per model and batch size: the run with the median img/s (the lower of two)."""
    runs: dict[tuple[str, int], list[RawResult]] = {}
    for r in results:
        runs.setdefault((r.model, r.batch), []).append(r)
    return [sorted(rows, key=lambda r: r.images_per_second)[(len(rows) - 1) // 2] for rows in runs.values()]
