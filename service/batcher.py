"""Dynamic batching: concurrent requests in one worker share onnxruntime runs.

Request threads hand their images to `submit` and block; one batcher thread merges what is
queued (up to MAX_BATCH_SIZE images, waiting at most MAX_QUEUE_DELAY_MS for more), runs the
model once and hands each request its own rows. It only waits when other requests of this
worker are still on their way (`expecting`), so a lone client pays no delay.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from service.metrics import BATCH_SIZE, QUEUE_SECONDS

log = logging.getLogger(__name__)

RunFn = Callable[[np.ndarray], np.ndarray]


@dataclass(eq=False)
class _Pending:
    images: np.ndarray
    queued_at: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class Batcher:
    """Merges concurrent `submit` calls for one model version into shared runs."""

    def __init__(self, run: RunFn, model: str, max_batch_size: int, max_delay_ms: float):
        self._run = run
        self._model = model
        self._max = max_batch_size
        self._delay = max_delay_ms / 1000
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._expected = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    @contextmanager
    def expecting(self) -> Iterator[None]:
        """Mark a request on its way (decoding) so the batcher waits for it a little."""
        with self._lock:
            self._expected += 1
        try:
            yield
        finally:
            with self._lock:
                self._expected -= 1

    def submit(self, images: np.ndarray) -> np.ndarray:
        """The model's output rows for images; blocks until they are computed."""
        with self._lock:
            direct = self._closed or self._max <= 1 or len(images) >= self._max
            if not direct:
                pending = _Pending(images)
                self._queue.put(pending)
                if self._thread is None:
                    # Started lazily, so it is created in the gunicorn worker, after fork.
                    self._thread = threading.Thread(target=self._loop, name=f"batcher-{self._model}", daemon=True)
                    self._thread.start()
        if direct:
            # A request as big as a batch gains nothing from merging; a closed batcher belongs
            # to a replaced version whose session still works for the requests that hold it.
            return self._run_observed(images, [])
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result

    def close(self) -> None:
        """Stop after the queued requests; later submits run directly."""
        with self._lock:
            self._closed = True
            if self._thread is not None:
                self._queue.put(None)

    def _run_observed(self, images: np.ndarray, waits: list[float]) -> np.ndarray:
        for wait in waits or [0.0]:
            QUEUE_SECONDS.labels(self._model).observe(wait)
        BATCH_SIZE.labels(self._model).observe(len(images))
        return self._run(images)

    def _collect(self, first: _Pending) -> tuple[list[_Pending], _Pending | None]:
        batch, size = [first], len(first.images)
        deadline = first.queued_at + self._delay
        while size < self._max:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                with self._lock:
                    others_coming = self._expected > len(batch)
                timeout = deadline - time.perf_counter()
                if not others_coming or timeout <= 0:
                    break
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    break
            if item is None or size + len(item.images) > self._max:
                return batch, item  # starts the next batch (or ends the loop)
            batch.append(item)
            size += len(item.images)
        return batch, None

    def _loop(self) -> None:
        carry: _Pending | None = None
        while True:
            first = carry if carry is not None else self._queue.get()
            if first is None:
                return
            batch, carry = self._collect(first)
            self._execute(batch)

    def _execute(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            merged = batch[0].images if len(batch) == 1 else np.concatenate([p.images for p in batch])
            out = self._run_observed(merged, [started - p.queued_at for p in batch])
        except Exception as exc:  # never leave a request waiting forever
            if len(batch) > 1:
                # Run them one by one, so only the request that breaks the model sees the error.
                for p in batch:
                    self._execute([p])
                return
            log.exception("inference failed")
            batch[0].error = exc
            batch[0].done.set()
            return
        offset = 0
        for p in batch:
            p.result = out[offset : offset + len(p.images)]
            offset += len(p.images)
            p.done.set()
