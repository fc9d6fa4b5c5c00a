"""Dynamic batching: concurrent requests in one worker share onnxruntime runs.

No batcher thread: the request that finds the model idle runs it at once (a lone client pays
nothing). Requests that arrive while a run is under way queue up; when the run ends, the oldest
waiting request becomes the next leader and runs everything queued (up to MAX_BATCH_SIZE
images) as one batch. Merging what is already queued is free.

Waiting for more is not: a leader waits only where a merged run was measured to be much
cheaper per image than separate runs (the runtime measures it at load: on a GPU one image costs
about what eight do; on a CPU, about an eighth), only while other requests of this worker are
still decoding (`expecting`), and never longer than one run of a single image takes, nor
MAX_QUEUE_DELAY_MS. On the CPU it never waits: waiting made single-image requests slower there,
and on the H100 a fixed 2 ms wait made batching on four times slower than off.

Why leaders instead of a batcher thread: a dedicated thread needs the GIL several times per
batch and, among busy request threads, waits up to a GIL switch interval (5 ms by default) for it each time.
Measured on an H100 with 8 workers, that thread made single-image p50 latency 120 ms; a
leader already holds the GIL.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from service.metrics import BATCH_SIZE, BATCH_WAIT, QUEUE_SECONDS

RunFn = Callable[[np.ndarray], np.ndarray]


@dataclass(eq=False)
class _Pending:
    images: np.ndarray
    queued_at: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    result: np.ndarray | None = None
    error: BaseException | None = None


class Batcher:
    """Merges concurrent `submit` calls for one model version into shared runs."""

    def __init__(self, run: RunFn, model: str, max_batch_size: int, wait_s: float = 0.0):
        self._run = run
        self._model = model
        self._max = max_batch_size
        self._delay = wait_s if max_batch_size > 1 else 0.0  # 0: merge only what is queued
        BATCH_WAIT.labels(model).set(self._delay)
        self._cond = threading.Condition()
        self._queue: deque[_Pending] = deque()
        self._running = False
        self._coming = 0  # requests between `expecting()` and `submit()`
        self._local = threading.local()

    @contextmanager
    def expecting(self) -> Iterator[None]:
        """Mark a request on its way (decoding), so a leader may wait a little for it."""
        if not self._delay:  # nobody waits for it: skip the bookkeeping
            yield
            return
        with self._cond:
            self._coming += 1
        self._local.coming = True
        try:
            yield
        finally:
            self._arrived()

    def _arrived(self) -> None:
        if getattr(self._local, "coming", False):
            self._local.coming = False
            with self._cond:
                self._coming -= 1

    def submit(self, images: np.ndarray) -> np.ndarray:
        """The model's output rows for images; blocks until they are computed."""
        self._arrived()
        pending = _Pending(images)
        with self._cond:
            self._queue.append(pending)
            pending.lead = not self._running
            self._running = True
            self._cond.notify()
        if not pending.lead:
            pending.done.wait()  # woken with a result, or to lead the next batch
        if pending.lead:
            self._lead()
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _lead(self) -> None:
        with self._cond:
            deadline = self._queue[0].queued_at + self._delay
            while self._coming and self._queued() < self._max and (left := deadline - time.perf_counter()) > 0:
                self._cond.wait(left)
            # The oldest request always goes, alone if it is as big as a batch; runs stay one at a
            # time per worker, in arrival order, whatever their size (concurrent runs oversubscribed
            # the CPU: "batching off" that ran each request at once had a p99 of 200 ms at c=32).
            batch = [self._queue.popleft()]
            size = len(batch[0].images)
            while self._queue and size + len(self._queue[0].images) <= self._max:
                batch.append(self._queue.popleft())
                size += len(batch[-1].images)
        self._execute(batch)
        with self._cond:
            if self._queue:
                successor = self._queue[0]
                successor.lead = True
                successor.done.set()
            else:
                self._running = False

    def _queued(self) -> int:
        return sum(len(p.images) for p in self._queue)

    def _execute(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        for p in batch:
            QUEUE_SECONDS.labels(self._model).observe(started - p.queued_at)
        try:
            merged = batch[0].images if len(batch) == 1 else np.concatenate([p.images for p in batch])
            BATCH_SIZE.labels(self._model).observe(len(merged))
            out = self._run(merged)
        except Exception as exc:
            if len(batch) > 1:
                # Run them one by one, so only the request that breaks the model sees the error.
                for p in batch:
                    self._execute([p])
                return
            batch[0].error = exc
            batch[0].done.set()
            return
        offset = 0
        for p in batch:
            p.result = out[offset : offset + len(p.images)]
            offset += len(p.images)
            if not p.lead:
                p.done.set()
