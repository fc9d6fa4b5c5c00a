"""Worker memory across two rounds of requests: steady growth between rounds means a leak."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.generators import hey
from benchmarks.payloads import Payload
from tests.harness import rss_mb

REQUESTS = 10_000
CONCURRENCY = 8


@dataclass(frozen=True)
class MemoryResult:
    scenario: str
    requests_per_round: int
    rounds: list[dict[int, float]]  # after each round: worker pid → RSS MB
    errors: int

    def growth(self) -> dict[int, float]:
        """MB each worker grew from the first round to the last (pids that lived through both)."""
        first, last = self.rounds[0], self.rounds[-1]
        return {pid: last[pid] - first[pid] for pid in last if pid in first}


def workers(master: int) -> list[int]:
    """gunicorn workers: the processes whose parent is the master."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces; the fields after its ")" are safe to split.
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # the process exited while we looked
            continue
        if ppid == master:
            children.append(int(stat.parent.name))
    return sorted(children)


def measure_memory(url: str, master: int, payload: Payload, tmp: Path, requests: int = REQUESTS, rounds: int = 2) -> MemoryResult:
    after, errors = [], 0
    for _ in range(rounds):
        # A request count, not a duration: every round does the same work, so RSS is comparable.
        summary = hey(url, payload, tmp, "-n", str(requests), "-c", str(CONCURRENCY), timeout=600)
        errors += sum(n for code, n in summary.statuses.items() if code != 200) + summary.errors
        after.append({pid: rss_mb(pid) for pid in workers(master)})
    return MemoryResult(payload.scenario, requests, after, errors)
