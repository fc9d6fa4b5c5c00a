"""How many cores the service may use, and how many onnxruntime runs are under way in the whole server.

`count()` is the CPUs this process may run on, capped by its cgroup's CPU quota: a container
limited to 2 CPUs on a 64-core node sees 64 in its affinity mask, and sizing workers and
intra-op threads from that starts dozens of threads that the quota then throttles.

A lone request runs fastest on every core (measured on the 2-core EPYC: 520 img/s on one
intra-op thread, about 970 on two), but runs in several workers at once are fastest on one
thread each (two 2-thread runs on 2 cores fell to 440 img/s). So each run asks whether it is
alone: this counter lives in shared memory that the gunicorn master creates before it forks
its workers (`share()` in gunicorn.conf.py); in a single process it is an ordinary one.
"""
from __future__ import annotations

import math
import multiprocessing
import multiprocessing.sharedctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")

_runs: multiprocessing.sharedctypes.Synchronized | None = None


def count(root: Path = CGROUP_ROOT, membership: Path = PROC_CGROUP) -> int:
    """CPUs this process may use: its affinity mask, capped by its cgroup's quota rounded up."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = quota(root, membership)
    return cpus if limit is None else max(1, min(cpus, math.ceil(limit)))


def quota(root: Path = CGROUP_ROOT, membership: Path = PROC_CGROUP) -> float | None:
    """The CPU quota, in CPUs, of the cgroup in `membership` and its ancestors (the smallest); None: no limit.

    cgroup v2 writes it as `<quota> <period>` in cpu.max (`max` for none); v1 as cpu.cfs_quota_us
    (-1 for none) over cpu.cfs_period_us, under the hierarchy whose controllers include `cpu`. A
    container without its own cgroup namespace sees the host's path in `membership`, which does
    not exist under its mount: the levels that exist are read, down to the mount itself.
    """
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: "0::/path"
            limits += [_v2(folder) for folder in _levels(root, path)]
        elif "cpu" in controllers.split(","):  # v1: "4:cpu,cpuacct:/path"
            for mount in (root / controllers, root / "cpu"):
                limits += [_v1(folder) for folder in _levels(mount, path)]
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def _levels(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder under `mount` and each of its ancestors down to `mount`, those that exist."""
    parts = [part for part in path.split("/") if part]
    return [folder for n in range(len(parts), -1, -1) if (folder := mount.joinpath(*parts[:n])).is_dir()]


def _v2(folder: Path) -> float | None:
    fields = _read(folder / "cpu.max").split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1])


def _v1(folder: Path) -> float | None:
    return _ratio(_read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us"))


def _ratio(quota_text: str, period_text: str) -> float | None:
    try:
        limit, period = int(quota_text), int(period_text)
    except ValueError:
        return None
    return limit / period if limit > 0 and period > 0 else None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def share() -> None:
    """Create the counter in shared memory; call in the master before workers fork."""
    global _runs
    _runs = multiprocessing.Value("i", 0)


@contextmanager
def running() -> Iterator[bool]:
    """Count one run while it lasts; yields whether it is alone in the server."""
    if _runs is None:
        share()
    with _runs.get_lock():
        _runs.value += 1
        alone = _runs.value == 1
    try:
        yield alone
    finally:
        with _runs.get_lock():
            _runs.value -= 1


@dataclass
class LoneRuns:
    """Which session a run alone in the server uses: the one (one thread, or every core) whose
    recent lone runs took less time per image. The host decides which is faster, and changes its
    mind: on the 2-core EPYC two threads ran one image 1.3–1.9× faster on a quiet machine and 2×
    slower while another job held a core. So the choice follows a moving average of what lone runs
    measured, and every EXPLORE_EVERY-th lone run tries the other session, to notice a change.
    """

    per_image: list[float] = field(default_factory=lambda: [1.0, 1.0])  # seconds: [one thread, every core]
    runs: int = 0

    EXPLORE_EVERY = 16
    WEIGHT = 0.2  # of the newest run in the moving average

    def pick(self) -> int:
        """0: the one-thread session, 1: the every-core one."""
        self.runs += 1
        faster = int(self.per_image[1] < self.per_image[0])
        return 1 - faster if self.runs % self.EXPLORE_EVERY == 0 else faster

    def record(self, which: int, seconds: float, images: int) -> None:
        self.per_image[which] += self.WEIGHT * (seconds / max(images, 1) - self.per_image[which])
