"""The background thread that keeps a worker current: operators' decisions each second, the
repository every RELOAD_POLL_SECONDS, both through the model manager's own methods.

Each round runs in a thread of its own that the poller waits for no longer than
REPOSITORY_SCAN_TIMEOUT: a round stuck on a hung filesystem, or on a version whose warm-up never
ends, is logged, counted (serving_repository_scan_timeouts_total) and left to finish on its own,
and no second round starts until it has. The first round runs at boot the same way, so a worker
boots with whatever loaded in time (readiness says whether the default model did) and its
liveness never depends on the repository.
"""
from __future__ import annotations

import ctypes
import gc
import logging
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
        self._round: threading.Thread | None = None  # the round in progress, possibly stuck
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-poller", daemon=True)

    def start(self) -> None:
        """Load what the repository holds (waiting at most the scan timeout), then poll in the background."""
        self._manager.start()
        self._bounded(scan=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        next_scan = time.monotonic() + self._reload
        let_go = released = self._manager.sessions_released()
        while not self._stop.wait(min(DECISION_TICK, self._reload or DECISION_TICK)):
            # A tick after sessions were let go (requests still on them have finished by then).
            if released != let_go:
                released = let_go
                release_freed_memory()
            scan = bool(self._reload) and time.monotonic() >= next_scan
            if scan:
                next_scan = time.monotonic() + self._reload
            self._bounded(scan)
            let_go = self._manager.sessions_released()

    def _bounded(self, scan: bool) -> None:
        """One round (decisions, and a scan if due), waited for at most the scan timeout."""
        if self._round is not None and self._round.is_alive():
            return  # still stuck: counted when it was abandoned; never a second one beside it
        self._round = threading.Thread(target=self._poll, args=(scan,), name="repository-scan", daemon=True)
        self._round.start()
        self._round.join(self._timeout)
        if self._round.is_alive():
            REPOSITORY_SCAN_TIMEOUTS.inc()
            log.error("the model repository scan has run for more than %g s (REPOSITORY_SCAN_TIMEOUT): no longer "
                      "waiting for it; serving what is loaded, and no new scan until it ends", self._timeout)

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
