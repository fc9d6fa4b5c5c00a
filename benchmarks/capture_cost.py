"""python -m benchmarks.capture_cost: what capture costs single-image throughput, on and off side by side.

Two copies of the real service on the shipped models, one with CAPTURE_ENABLED=0 and one with
capture on into an SQLite file (the default store), are measured in the same run: each round
runs both back to back at each concurrency (the order alternating between rounds, every server
idle first), and the table keeps each row's median round. Target (issue 21): capture on loses
at most 5% of single-image req/s at c=8. Figures, not a test: nothing fails on a miss.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmarks.generators import require
from benchmarks.load import LoadResult, Target, measure_round, medians, warm_up
from benchmarks.payloads import SCENARIOS, payloads, test_images
from service.settings import Settings
from tests.harness import ROOT, Server, start_server

TARGET_LOSS = 0.05
SINGLE_IMAGE = SCENARIOS[:2]  # v1 png, v2 json: one image a request


@contextlib.contextmanager
def _service(repository: Path, tmp: Path, capture: bool) -> Iterator[Server]:
    """The service as servers.service starts it (batching on, the default worker count), capture on or off."""
    env = {"LOG_LEVEL": "warning", "DEVICE": "cpu", "CAPTURE_ENABLED": "1" if capture else "0",
           "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY") or str(Settings().web_concurrency),
           "CAPTURE_URL": f"sqlite:///{tmp / 'captures.db'}"}
    server = start_server(repository, tmp, **env)
    try:
        yield server
    finally:
        server.stop()


def run(rounds: int, duration: float, concurrencies: list[int], generator: str) -> list[LoadResult]:
    """Every round: capture off and on, back to back, at each concurrency; the rows of every round."""
    require(generator)
    with tempfile.TemporaryDirectory(prefix="capture-cost-") as name, contextlib.ExitStack() as stack:
        tmp = Path(name)
        shutil.copytree(ROOT / "models", tmp / "models", ignore=shutil.ignore_patterns(".lock", ".reports"))
        bodies = [p for p in payloads(test_images()) if p.scenario.startswith(SINGLE_IMAGE)]
        targets = []
        for capture in (False, True):
            (tmp / str(capture)).mkdir()
            server = stack.enter_context(_service(tmp / "models", tmp / str(capture), capture))
            targets.append(Target(f"capture {'on' if capture else 'off'}", True, server, bodies))
        warm_up(targets, tmp, generator)
        results = []
        for n in range(rounds):
            order = targets if n % 2 == 0 else targets[::-1]
            results += measure_round(order, concurrencies, duration, tmp, generator, label=f"round {n + 1}: ")
        return results


def report(results: list[LoadResult]) -> str:
    """A markdown table: req/s off and on per scenario and concurrency, and the loss."""
    rows = {(r.kind, r.scenario, r.concurrency): r for r in medians(results)}
    cpu = _cpu_per_request(results)
    lines = ["| scenario | c | capture off req/s | capture on req/s | change | CPU ms/request off → on | rounds off | rounds on |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for (kind, scenario, c), off in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if kind != "capture off":
            continue
        on = rows[("capture on", scenario, c)]
        change = on.requests_per_second / off.requests_per_second - 1
        cpu_off, cpu_on = cpu[("capture off", scenario, c)], cpu[("capture on", scenario, c)]
        lines.append(f"| {scenario} | {c} | {off.requests_per_second:.0f} | {on.requests_per_second:.0f} | {change:+.1%} | "
                     f"{cpu_off:.3f} → {cpu_on:.3f} ({cpu_on / cpu_off - 1:+.1%}) | "
                     f"{', '.join(f'{x:.0f}' for x in off.spread)} | {', '.join(f'{x:.0f}' for x in on.spread)} |")
    errors = sum(r.errors for r in results)
    lines.append(f"\nerrors: {errors}; target: capture on loses at most {TARGET_LOSS:.0%} at c=8")
    return "\n".join(lines)


def _cpu_per_request(results: list[LoadResult]) -> dict[tuple[str, str, int], float]:
    """Workers' CPU milliseconds per answered request over every round: steadier than req/s on a
    host whose speed drifts, since it does not count the time the CPU spent on someone else."""
    cpu: dict[tuple[str, str, int], list[float]] = {}
    for r in results:
        totals = cpu.setdefault((r.kind, r.scenario, r.concurrency), [0.0, 0])
        totals[0] += sum(r.worker_cpu)
        totals[1] += r.ok
    return {key: 1000 * seconds / max(1, ok) for key, (seconds, ok) in cpu.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.capture_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run (default 10)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8], help="concurrencies (default 8)")
    parser.add_argument("--generator", choices=["wrk", "hey"], default="wrk")
    args = parser.parse_args(argv)
    print(report(run(args.rounds, args.duration, args.concurrency, args.generator)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
