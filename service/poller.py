"""The background thread that keeps a worker current: operators' decisions each second, the
repository every RELOAD_POLL_SECONDS, both through the model manager's own methods.

Rounds run in one long-lived thread of their own, which the poller waits for no longer than
REPOSITORY_SCAN_TIMEOUT: a round stuck on a hung filesystem, or on a version whose warm-up never
ends, is logged, counted (serving_repository_scan_timeouts_total) and left to finish on its own,
and no second round starts until it has. The first round runs at boot the same way, so a worker
boots with whatever loaded in time (readiness says whether the default model did) and its
liveness never depends on the repository. One thread, not one a round: a round a second made
86,400 threads a day per worker, each a new stack for glibc to map and an arena to pick.
"""
from __future__ import annotations

import ctypes
import gc
import logging
import queue
import threading
import time

from service.metrics import REPOSITORY_SCAN_TIMEOUTS, REPOSITORY_SCANS
from service.models import ModelManager

log = logging.getLogger(__name__)
# Decisions from other workers and replicas take effect within this many seconds.
DECISION_TICK = 1.0


class Poller:
    def __init__(self, manager: ModelManager, reload_seconds: float, scan_timeout: float):
        self._manager = manager
        self._reload = reload_seconds  # 0: never scan the repository, still follow decisions
        self._timeout = scan_timeout
        self._rounds: queue.SimpleQueue[bool | None] = queue.SimpleQueue()  # scan or not; None ends the thread
        self._idle = threading.Event()  # set while no round is in progress (a stuck one keeps it clear)
        self._idle.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-poller", daemon=True)
        self._round_thread = threading.Thread(target=self._run_rounds, name="repository-scan", daemon=True)

    def start(self) -> None:
        """Load what the repository holds (waiting at most the scan timeout), then poll in the background."""
        self._manager.start()
        self._round_thread.start()
        self._bounded(scan=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._rounds.put(None)

    def _run(self) -> None:
        next_scan = time.monotonic() + self._reload
        released = trimmed = self._manager.sessions_released()
        while not self._stop.wait(min(DECISION_TICK, self._reload or DECISION_TICK)):
            # A tick after sessions were released (requests still on them have finished by then).
            if trimmed != released:
                trimmed = released
                release_freed_memory()
            scan = bool(self._reload) and time.monotonic() >= next_scan
            if scan:
                next_scan = time.monotonic() + self._reload
            self._bounded(scan)
            released = self._manager.sessions_released()

    def _bounded(self, scan: bool) -> None:
        """One round (decisions, and a scan if due), waited for at most the scan timeout."""
        if not self._idle.is_set():
            return  # still stuck: counted when it was abandoned; never a second one beside it
        self._idle.clear()
        self._rounds.put(scan)
        if not self._idle.wait(self._timeout):
            REPOSITORY_SCAN_TIMEOUTS.inc()
            log.error("the model repository scan has run for more than %g s (REPOSITORY_SCAN_TIMEOUT): no longer "
                      "waiting for it; serving what is loaded, and no new scan until it ends", self._timeout)

    def _run_rounds(self) -> None:
        while (scan := self._rounds.get()) is not None:
            self._poll(scan)
            self._idle.set()

    def _poll(self, scan: bool) -> None:
        started = time.monotonic()
        try:
            self._manager.apply_decisions()
            if scan:
                self._manager.scan()
                REPOSITORY_SCANS.inc()
        except Exception:  # the poller must outlive anything the filesystem does
            log.exception("model repository poll failed")
        seconds = time.monotonic() - started
        if seconds > self._timeout:
            log.warning("the abandoned model repository scan ended after %.1f s", seconds)


def release_freed_memory() -> None:
    """Hand the pages of freed sessions back to the system.

    glibc keeps freed memory in its per-thread arenas, fragmented by the request threads' small
    allocations: 300 unload/load cycles of the int8 model under traffic grew a worker from 120 to
    185 MB, where it stayed. malloc_trim(0) releases the free pages of every arena.
    """
    gc.collect()  # sessions caught in reference cycles go now, not at some later collection
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        pass
