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
