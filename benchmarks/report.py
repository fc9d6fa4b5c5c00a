"""One markdown table for raw, naive-baseline and service runs, and the results file around it."""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

import onnxruntime as ort

from benchmarks.load import LoadResult
from benchmarks.memory import MemoryResult
from benchmarks.raw import RawResult

HEADER = ["kind", "scenario", "batching", "concurrency", "img/request", "img/s", "req/s", "p50 ms", "p99 ms", "errors",
          "vs raw", "vs naive", "CPU s per worker", "img/s by round"]
CPU_FLAGS = {"avx2": ("avx2",), "avx512_vnni": ("avx512_vnni",), "amx": ("amx_tile", "amx_int8", "amx_bf16")}


def _ms(value: float | None) -> str:
    # 3 significant digits: raw runs of a small model take microseconds, service requests milliseconds.
    return "-" if value is None else f"{value:.3g}"


def _ratio(value: float, reference: float | None) -> str:
    return f"{value / reference:.3g}" if reference else "-"


def raw_reference(raw: list[RawResult], images: int) -> float | None:
    """The raw fp32 img/s a row is held to: batch 64 for 64-image requests, else the best batch size."""
    fp32 = {r.batch: r.images_per_second for r in raw if r.model == "fp32"}
    best = max(fp32.values(), default=None)
    return fp32.get(images, best) if images > 1 else best


def markdown(rows: list[list[str]]) -> str:
    """A markdown table: the first row is the header."""
    lines = [rows[0], ["---"] * len(rows[0]), *rows[1:]]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def table(raw: list[RawResult], load: list[LoadResult]) -> str:
    # vs raw < 1 is what HTTP, parsing and batching cost; vs naive < 1 means the plain Flask app wins.
    naive = {(n.images_per_request, n.concurrency): n.images_per_second for n in load if n.kind == "naive"}
    rows = [["raw", f"{r.model} batch {r.batch}", "-", "1", str(r.batch), f"{r.images_per_second:.0f}",
             f"{r.runs / r.seconds:.1f}", _ms(r.p50_ms), _ms(r.p99_ms), "0",
             _ratio(r.images_per_second, raw_reference(raw, r.batch)), "-", "-", "-"] for r in raw]
    rows += [[s.kind, s.scenario, "-" if s.batching is None else "on" if s.batching else "off", str(s.concurrency),
              str(s.images_per_request), f"{s.images_per_second:.0f}", f"{s.requests_per_second:.1f}", _ms(s.p50_ms),
              _ms(s.p99_ms), str(s.errors), _ratio(s.images_per_second, raw_reference(raw, s.images_per_request)),
              _ratio(s.images_per_second, naive.get((s.images_per_request, s.concurrency))),
              "/".join(f"{c:.1f}" for c in s.worker_cpu) or "-", "/".join(f"{x:.0f}" for x in s.spread) or "-"]
             for s in sorted(load, key=lambda s: s.kind != "naive")]  # the baseline first, then the service
    return markdown([HEADER, *rows])


def memory_table(result: MemoryResult) -> str:
    pids = sorted({pid for round_ in result.rounds for pid in round_})
    growth = result.growth()
    header = ["worker pid", *(f"RSS MB after round {i + 1}" for i in range(len(result.rounds))), "growth MB"]
    rows = [[str(pid), *(f"{r[pid]:.1f}" if pid in r else "-" for r in result.rounds),
             f"{growth[pid]:+.1f}" if pid in growth else "-"] for pid in pids]
    intro = (f"{result.requests_per_round} `{result.scenario}` requests per round (hey -n {result.requests_per_round} -c 8), "
             f"batching on; errors: {result.errors}.\n\n")
    return intro + markdown([header, *rows])


def cpu() -> str:
    """The CPU model and the instruction sets that decide onnxruntime's kernels (fp32 and int8)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), platform.processor())
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    has = ", ".join(f"{name} {'yes' if flags & set(names) else 'no'}" for name, names in CPU_FLAGS.items())
    return f"{model}, {len(os.sched_getaffinity(0))} cores (nproc); {has}"


def machine(load_at_start: float) -> str:
    return (f"- cpu: {cpu()}\n"
            f"- load average (1 min) at the start / end: {load_at_start:.2f} / {os.getloadavg()[0]:.2f}; "
            f"other work on the machine lowers every row\n"
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC\n"
            f"- command: `{shlex.join([os.path.basename(sys.executable), '-m', 'benchmarks', *sys.argv[1:]])}`\n"
            f"- onnxruntime {ort.__version__}, Python {platform.python_version()}")


def document(raw: list[RawResult], load: list[LoadResult], memory: MemoryResult | None, notes: list[str],
             load_at_start: float) -> str:
    parts = ["# Benchmark results", machine(load_at_start) + "".join(f"\n- {note}" for note in notes), table(raw, load)]
    if memory:
        parts += ["## Memory", memory_table(memory)]
    return "\n\n".join(parts) + "\n"
