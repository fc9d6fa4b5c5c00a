"""Reads: one capture by its address, labelled captures by time (for the retraining job), the count."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, func, select

from store.schema import CAPTURES, SOURCES


@dataclass(frozen=True)
class Capture:
    """One captured image, as the model saw it."""

    request_id: str
    index: int
    captured_at: float
    api: str
    model: str
    version: int
    input: np.ndarray
    predicted: int
    probabilities: np.ndarray
    label: int | None
    label_source: str | None
    labelled_at: float | None
    id: int = 0  # the store's row id: names this capture for good (the job hashes the ids it trained on)


def _capture(row) -> Capture:
    return Capture(row.request_id, row.image_index, row.captured_at, row.api, row.model, row.version,
                   _array(row.input, row.dtype, row.shape), row.predicted,
                   _array(row.probabilities, "<f4", ""), row.label, row.label_source, row.labelled_at, row.id)


def _array(blob: bytes, dtype: str, shape: str) -> np.ndarray:
    """A stored array, or an empty one when its bytes, dtype and shape disagree: one row written by
    hand or by a bug must not stop the job reading every other one (readers skip what is empty)."""
    try:
        array = np.frombuffer(blob, np.dtype(dtype))
        return array.reshape(tuple(int(n) for n in shape.split(",") if n)) if shape else array
    except (ValueError, TypeError):
        return np.empty(0, np.float32)


def find(engine: Engine, request_id: str, index: int, not_before: float) -> Capture | None:
    """The newest capture of (request_id, index) taken at or after `not_before`, or None."""
    query = (select(CAPTURES).where(CAPTURES.c.request_id == request_id, CAPTURES.c.image_index == index,
                                    CAPTURES.c.captured_at >= not_before)
             .order_by(CAPTURES.c.id.desc()).limit(1))
    with engine.connect() as connection:
        row = connection.execute(query).first()
    return None if row is None else _capture(row)


def labelled(engine: Engine, since: float, until: float, model: str | None = None,
             sources: Sequence[str] = SOURCES, chunk: int = 1000) -> Iterator[Capture]:
    """Captures labelled in [since, until), oldest label first, from the given label sources."""
    query = (select(CAPTURES).where(CAPTURES.c.labelled_at >= since, CAPTURES.c.labelled_at < until,
                                    CAPTURES.c.label_source.in_(list(sources)))
             .order_by(CAPTURES.c.labelled_at, CAPTURES.c.id))
    if model is not None:
        query = query.where(CAPTURES.c.model == model)
    with engine.connect() as connection:
        for rows in connection.execution_options(yield_per=chunk).execute(query).partitions():
            yield from (_capture(row) for row in rows)


def count_labelled(engine: Engine, since: float, model: str | None = None, sources: Sequence[str] = SOURCES) -> int:
    """Captures labelled after `since` (Unix seconds) from the given label sources: what is new to learn."""
    query = (select(func.count()).select_from(CAPTURES)
             .where(CAPTURES.c.labelled_at > since, CAPTURES.c.label_source.in_(list(sources))))
    if model is not None:
        query = query.where(CAPTURES.c.model == model)
    with engine.connect() as connection:
        return connection.execute(query).scalar_one()


def count(engine: Engine) -> int:
    """Rows in the store."""
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(CAPTURES)).scalar_one()
