"""Feedback's plain parts: the body as a typed model, and the per-client limit on public labels."""
from __future__ import annotations

import threading
import time

from pydantic import Field, StrictInt, StrictStr, model_validator

from service.protocol import REQUEST_ID_PATTERN, _Strict

# Client addresses remembered per worker; past it the oldest are forgotten (bounded memory
# under a flood of addresses, at the price of letting a forgotten one start afresh).
MAX_CLIENTS = 10_000


class FeedbackRequest(_Strict):
    """Body of POST /v1/feedback: the true class of one captured image, by name or by id (one of them)."""

    id: StrictStr = Field(min_length=1, max_length=128, pattern=REQUEST_ID_PATTERN)
    index: StrictInt = Field(0, ge=0, le=100_000)
    label: StrictStr | None = Field(None, max_length=128)
    class_id: StrictInt | None = Field(None, ge=0, le=100_000)

    @model_validator(mode="after")
    def _one_label(self) -> "FeedbackRequest":
        if (self.label is None) == (self.class_id is None):
            raise ValueError("give the true class as exactly one of label or class_id")
        return self


class RateLimit:
    """A token bucket per client address: `per_minute` labels, refilled continuously."""

    def __init__(self, per_minute: int):
        self.rate, self.capacity = per_minute / 60.0, float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}  # address → (tokens, when)
        self._lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> bool:
        """Take one token for `client`; False when it has none left."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, then = self._buckets.pop(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate)
            if len(self._buckets) >= MAX_CLIENTS:
                self._buckets.pop(next(iter(self._buckets)))
            self._buckets[client] = (tokens - 1 if tokens >= 1 else tokens, now)
            return tokens >= 1
