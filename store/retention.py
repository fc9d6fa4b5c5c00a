"""Retention: captures older than the maximum age go, then the oldest past the maximum row count."""
from __future__ import annotations

from sqlalchemy import Engine, delete, select

from store.schema import CAPTURES


def prune(engine: Engine, max_rows: int, max_age_seconds: float, now: float) -> int:
    """Delete captures taken before now - max_age_seconds, then all but the newest max_rows; the count deleted."""
    with engine.begin() as connection:
        deleted = connection.execute(delete(CAPTURES).where(CAPTURES.c.captured_at < now - max_age_seconds)).rowcount
        # ids grow with time: the (max_rows + 1)-th newest id is the newest one to go.
        newest_to_go = connection.execute(select(CAPTURES.c.id).order_by(CAPTURES.c.id.desc())
                                          .offset(max_rows).limit(1)).scalar_one_or_none()
        if newest_to_go is not None:
            deleted += connection.execute(delete(CAPTURES).where(CAPTURES.c.id <= newest_to_go)).rowcount
    return deleted
