"""Fill a real capture store with labelled v1 captures, through the store's own insert and label."""
from __future__ import annotations

import time

import numpy as np

import store


def fill(url: str, images: np.ndarray, labels: np.ndarray, model: str = "fashion-mnist", source: str = "token",
         start: float | None = None, labelled_at: float | None = None, prefix: str = "req") -> list[str]:
    """One v1 capture per uint8 [28, 28] image, captured a second apart from `start`, each labelled by
    `source`; returns the request ids (in capture order). By default the last one was captured just now."""
    start = time.time() - len(images) - 1 if start is None else start
    engine = store.connect(url)
    ids = [f"{prefix}-{i}" for i in range(len(images))]
    store.insert(engine, [{
        "request_id": rid, "image_index": 0, "captured_at": start + i, "api": "v1", "model": model, "version": 1,
        "input": np.ascontiguousarray(image, np.uint8).tobytes(), "dtype": "uint8", "shape": "28,28",
        "predicted": 0, "probabilities": np.full(10, 0.1, np.float32).tobytes(),
    } for i, (rid, image) in enumerate(zip(ids, images))])
    for i, (rid, label) in enumerate(zip(ids, labels)):
        when = (start + i + 0.5) if labelled_at is None else labelled_at
        assert store.label(engine, rid, 0, int(label), source, when, 0.0) is store.Outcome.RECORDED
    engine.dispose()
    return ids
