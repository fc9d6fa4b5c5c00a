"""Measure one running server: each scenario at each concurrency, through a load generator."""
from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import requests

from benchmarks.generators import RUNNERS, Summary
from benchmarks.payloads import Payload
from benchmarks.servers import cpu_seconds, settle
from tests.harness import Server

WARM_UP_SECONDS = 1.0
# wrk counts only the requests completed before its deadline. When few complete per connection
# (64 images at concurrency 32 take seconds each), the run is redone longer, up to MAX_STRETCH ×
# the duration, so that the requests lost at the deadline cost at most ~1/MIN_PER_CONNECTION.
MIN_PER_CONNECTION = 10
MAX_STRETCH = 6


@dataclass(frozen=True)
class LoadResult:
    kind: str  # "service" or "naive"
    scenario: str
    batching: bool | None  # None: the naive app, which has no batching
    concurrency: int
    images_per_request: int
    seconds: float
    ok: int  # 2xx responses
    errors: int  # other statuses + transport errors reported by the load generator
    p50_ms: float | None
    p99_ms: float | None
    worker_cpu: tuple[float, ...] = ()  # CPU seconds each worker used during the run
    spread: tuple[float, ...] = ()  # img/s of every round, when the row is the median of several

    @property
    def requests_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def images_per_second(self) -> float:
        return self.requests_per_second * self.images_per_request


def check(url: str, payload: Payload) -> None:
    """One request first: a wrong body should fail loudly here, not as thousands of 4xx under load."""
    response = requests.post(url + payload.path, data=payload.body, timeout=30,
                             headers={"Content-Type": payload.content_type} | payload.headers)
    if response.status_code != 200:
        raise RuntimeError(f"{payload.scenario}: HTTP {response.status_code}: {response.text[:500]}")


@dataclass(frozen=True)
class Target:
    """One server under test and the bodies it gets."""

    kind: str  # "service" or "naive"
    batching: bool | None
    server: Server
    bodies: list[Payload]


def warm_up(targets: list[Target], tmp: Path, generator: str = "wrk") -> None:
    """One checked request and a short discarded run per body: every worker loads its session
    (the naive app does so on its first request) before anything is timed."""
    for target in targets:
        for payload in target.bodies:
            check(target.server.url, payload)
            RUNNERS[generator](target.server.url, payload, tmp, max(4, 2 * len(target.server.workers())), WARM_UP_SECONDS)


def measure_round(targets: list[Target], concurrencies: list[int], duration: float, tmp: Path,
                  generator: str = "wrk", label: str = "") -> list[LoadResult]:
    """Every body of every target at every concurrency, the targets back to back at each one.

    Back to back because the host drifts: on these shared machines the same server gave 20% apart
    a few minutes apart, so the rows compared (the naive app, batching on, batching off) run
    within seconds of each other; `medians` then keeps the middle of several rounds.
    """
    results = []
    for concurrency in concurrencies:
        for target in targets:
            for payload in target.bodies:
                summary, cpu = _long_enough(target.server, [t.server for t in targets], generator, payload, tmp,
                                            concurrency, duration)
                results.append(result := LoadResult(target.kind, payload.scenario, target.batching, concurrency, payload.images,
                                                    summary.seconds, summary.ok, summary.errors, summary.p50_ms, summary.p99_ms, cpu))
                mode = "" if target.batching is None else f" batching {'on' if target.batching else 'off'}"
                print(f"{label}{target.kind} {payload.scenario}{mode} c={concurrency}: {result.images_per_second:.0f} img/s, "
                      f"{result.errors} errors", file=sys.stderr, flush=True)
    return results


def medians(results: list[LoadResult]) -> list[LoadResult]:
    """One row per scenario: the median of its rounds."""
    runs: dict[tuple, list[LoadResult]] = {}
    for r in results:
        runs.setdefault((r.kind, r.scenario, r.batching, r.concurrency), []).append(r)
    return [_median(rows) for rows in runs.values()]


def _median(results: list[LoadResult]) -> LoadResult:
    """The run with the median img/s (the lower one of an even count), errors summed over all runs."""
    ordered = sorted(results, key=lambda r: r.images_per_second)
    middle = ordered[(len(ordered) - 1) // 2]
    assert middle.images_per_second == statistics.median_low(r.images_per_second for r in results)
    return replace(middle, errors=sum(r.errors for r in results),
                   spread=tuple(r.images_per_second for r in results) if len(results) > 1 else ())


def _long_enough(server: Server, everyone: list[Server], generator: str, payload: Payload, tmp: Path,
                 concurrency: int, duration: float) -> tuple[Summary, tuple[float, ...]]:
    """One bounded run, redone longer while wrk completed too few requests per connection.

    Every server up (`everyone`) is idle first, not only the one measured: the naive app was still
    working through the 64-image requests wrk dropped at c=32 (seconds of both cores) when the
    service's next row started, and that row read up to a third low.

    Also the CPU seconds each worker used in the run kept: keep-alive connections stay with the
    worker that accepted them, so the load can land on fewer workers than there are.
    """
    run, limit, wanted = RUNNERS[generator], duration * MAX_STRETCH, MIN_PER_CONNECTION * concurrency
    while True:
        for up in everyone:
            settle(up)
        pids = server.workers()
        before = [cpu_seconds([pid]) for pid in pids]
        summary = run(server.url, payload, tmp, concurrency, duration)
        cpu = tuple(cpu_seconds([pid]) - b for pid, b in zip(pids, before))
        if generator != "wrk" or summary.ok >= wanted or summary.errors:
            return summary, cpu
        if duration >= limit:
            print(f"warning: {payload.scenario} c={concurrency}: only {summary.ok} requests completed in {duration:g} s; "
                  f"img/s may read low by up to {concurrency / max(summary.ok, 1):.0%}", file=sys.stderr, flush=True)
            return summary, cpu
        duration = min(limit, duration * max(2.0, 1.2 * wanted / max(summary.ok, 1)))
