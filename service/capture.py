"""Capture: each worker's bounded queue and the thread that writes it to the store in batches.

The request path only samples and enqueues (put_nowait): it never waits for the store. When the
queue is full, or the store fails, captures are dropped and counted by reason; the request has
long succeeded. The same thread enforces retention every CAPTURE_PRUNE_SECONDS.
"""
from __future__ import annotations

import logging
import queue
import random
import threading
import time

import numpy as np
from sqlalchemy import Engine

import store
from service.metrics import CAPTURE_DROP_REASONS, CAPTURE_DROPS, CAPTURE_PRUNED, CAPTURED
from service.settings import Settings

log = logging.getLogger(__name__)
# Seconds between two log lines about a failing store: one outage, not one line per batch.
LOG_EVERY = 30.0
# A transaction costs the writer far more than a row (SQLAlchemy, a commit): one a row, at a few
# hundred images a second, took 20% of single-image throughput on 2 cores. So the writer sleeps
# this long, then writes what came meanwhile, in batches. It sleeps rather than waiting on the
# queue: a writer blocked in queue.get() is woken by every put, and each wake-up takes the GIL
# from the request threads. Feedback may see a capture this late.
FLUSH_SECONDS = 0.5
_LIVE: list["Capturer"] = []  # this process's capturers (one per app), for flush_all at exit


def flush_all() -> None:
    """Write what every capturer of this process still holds (a worker's exit: SIGTERM, max_requests)."""
    for capturer in _LIVE:
        capturer.flush()


class Capturer:
    """Samples captures, queues them, and writes and prunes them from one daemon thread."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine: Engine = store.connect(settings.capture_url, create=False)  # lazy: no connection yet
        self.queue: queue.Queue[dict] = queue.Queue(settings.capture_queue_size)
        self._schema_ready = False
        self._last_prune = 0.0
        self._last_log = -LOG_EVERY
        for reason in CAPTURE_DROP_REASONS:
            CAPTURE_DROPS.labels(reason)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()
        _LIVE.append(self)  # gunicorn's worker_exit hook flushes it (gunicorn.conf.py)

    def flush(self, timeout: float = FLUSH_SECONDS * 4) -> None:
        """Stop the writer once it has written the batch in its hands, then write what is queued; at most `timeout` s."""
        deadline = time.monotonic() + timeout
        self._closing.set()
        self._thread.join(timeout)
        while time.monotonic() < deadline and (batch := self._take()):
            self._write(batch)

    def max_age_seconds(self) -> float:
        """How long a capture is kept (and may be labelled)."""
        return self.settings.capture_max_age_hours * 3600

    def submit(self, request_id: str, api: str, model: str, version: int, inputs: np.ndarray,
               probabilities: np.ndarray) -> None:
        """Queue the sampled images of one answered request; drops (counted) when the queue is full."""
        now, rate = time.time(), self.settings.capture_sample_rate
        for index, (tensor, row) in enumerate(zip(inputs, probabilities)):
            if rate < 1.0 and random.random() >= rate:
                continue
            record = {"request_id": request_id, "image_index": index, "captured_at": now, "api": api, "model": model,
                      "version": version, "input": tensor.tobytes(), "dtype": tensor.dtype.str,
                      "shape": ",".join(map(str, tensor.shape)), "predicted": int(np.argmax(row)),
                      "probabilities": np.asarray(row, np.float32).tobytes()}
            try:
                self.queue.put_nowait(record)
            except queue.Full:
                CAPTURE_DROPS.labels("queue_full").inc()

    def _run(self) -> None:
        try:
            self.ensure_schema()  # early, so feedback finds the table before the first capture
        except Exception as exc:  # the store is down: the first write tries again
            self._log_failure("connect", exc)
        while not self._closing.wait(FLUSH_SECONDS):
            while len(batch := self._take()) == self.settings.capture_batch_size:
                self._write(batch)
            self._write(batch)
            self._prune_when_due()
        # flush() writes the rest

    def _take(self) -> list[dict]:
        """Up to CAPTURE_BATCH_SIZE queued captures, without waiting."""
        batch: list[dict] = []
        while len(batch) < self.settings.capture_batch_size:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write(self, batch: list[dict]) -> None:
        if not batch:
            return
        try:
            self.ensure_schema()
            store.insert(self.engine, batch)
        except Exception as exc:  # any store failure: count the loss, keep serving, try the next batch
            CAPTURE_DROPS.labels("store_error").inc(len(batch))
            self._log_failure("write", exc)
            return
        CAPTURED.inc(len(batch))

    def _prune_when_due(self) -> None:
        now = time.time()
        if now - self._last_prune < self.settings.capture_prune_seconds:
            return
        self._last_prune = now
        try:
            self.ensure_schema()
            CAPTURE_PRUNED.inc(store.prune(self.engine, self.settings.capture_max_rows, self.max_age_seconds(), now))
        except Exception as exc:  # retried at the next period
            self._log_failure("prune", exc)

    def ensure_schema(self) -> None:
        """Create the store's table once per worker (idempotent; raises while the store is down)."""
        if not self._schema_ready:
            store.engine.create_schema(self.engine)
            self._schema_ready = True

    def _log_failure(self, what: str, exc: Exception) -> None:
        if time.monotonic() - self._last_log >= LOG_EVERY:
            self._last_log = time.monotonic()
            log.warning("capture store %s failed (captures are dropped and counted until it answers): %s",
                        what, str(exc).splitlines()[0][:300])
