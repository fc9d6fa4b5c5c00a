"""One markdown table for raw and service runs, and the results file around it."""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys

import onnxruntime as ort

from benchmarks.load import LoadResult
from benchmarks.memory import MemoryResult
from benchmarks.raw import RawResult

HEADER = ["kind", "scenario", "batching", "concurrency", "img/request", "img/s", "req/s", "p50 ms", "p99 ms", "errors", "ratio"]


def _ms(value: float | None) -> str:
    # 3 significant digits: raw runs of a small model take microseconds, service requests milliseconds.
    return "-" if value is None else f"{value:.3g}"


def table(raw: list[RawResult], load: list[LoadResult]) -> str:
    # The ceiling: the faster fp32 batch size. ratio < 1 is what HTTP, parsing and batching cost.
    best = max((r.images_per_second for r in raw if r.model == "fp32"), default=0.0)

    def ratio(images_per_second: float) -> str:
        return f"{images_per_second / best:.3g}" if best else "-"

    rows = [["raw", f"{r.model} batch {r.batch}", "-", "1", str(r.batch), f"{r.images_per_second:.0f}",
             f"{r.runs / r.seconds:.1f}", _ms(r.p50_ms), _ms(r.p99_ms), "0", ratio(r.images_per_second)] for r in raw]
    rows += [["service", s.scenario, "on" if s.batching else "off", str(s.concurrency), str(s.images_per_request),
              f"{s.images_per_second:.0f}", f"{s.requests_per_second:.1f}", _ms(s.p50_ms), _ms(s.p99_ms),
              str(s.errors), ratio(s.images_per_second)] for s in load]
    lines = [HEADER, ["---"] * len(HEADER), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def memory_table(result: MemoryResult) -> str:
    pids = sorted({pid for round_ in result.rounds for pid in round_})
    growth = result.growth()
    header = ["worker pid", *(f"RSS MB after round {i + 1}" for i in range(len(result.rounds))), "growth MB"]
    rows = [[str(pid), *(f"{r[pid]:.1f}" if pid in r else "-" for r in result.rounds),
             f"{growth[pid]:+.1f}" if pid in growth else "-"] for pid in pids]
    lines = [header, ["---"] * len(header), *rows]
    intro = (f"{result.requests_per_round} `{result.scenario}` requests per round (hey -n {result.requests_per_round} -c 8), "
             f"batching on; errors: {result.errors}.\n\n")
    return intro + "\n".join("| " + " | ".join(line) + " |" for line in lines)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    return (f"- machine: {len(os.sched_getaffinity(0))} cores (nproc), {model}\n"
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC\n"
            f"- command: `{shlex.join([os.path.basename(sys.executable), '-m', 'benchmarks', *sys.argv[1:]])}`\n"
            f"- onnxruntime {ort.__version__}, Python {platform.python_version()}")


def document(raw: list[RawResult], load: list[LoadResult], memory: MemoryResult | None, notes: list[str]) -> str:
    parts = ["# Benchmark results", machine() + "".join(f"\n- {note}" for note in notes), table(raw, load)]
    if memory:
        parts += ["## Memory", memory_table(memory)]
    return "\n\n".join(parts) + "\n"
