"""How many onnxruntime runs are under way in the whole server, shared by every worker.

A lone request runs fastest on every core (measured on the 2-core EPYC: 520 img/s on one
intra-op thread, about 970 on two), but runs in several workers at once are fastest on one
thread each (two 2-thread runs on 2 cores fell to 440 img/s). So each run asks whether it is
alone: this counter lives in shared memory that the gunicorn master creates before it forks
its workers (`share()` in gunicorn.conf.py); in a single process it is an ordinary one.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.sharedctypes
from dataclasses import dataclass, field
from collections.abc import Iterator
from contextlib import contextmanager

_runs: multiprocessing.sharedctypes.Synchronized | None = None


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
