"""Writes: a batch of captures in one transaction, and a true label attached to one of them."""
from __future__ import annotations

import enum
import functools
from collections.abc import Sequence

from sqlalchemy import Dialect, Engine, and_, or_, select, update

from store.schema import CAPTURES, SOURCES


# Columns a capture is inserted without: the key, and the label that feedback adds later.
UNSET_ON_INSERT = ("id", "label", "label_source", "labelled_at")


class Outcome(enum.Enum):
    """What `label` did."""

    RECORDED = "recorded"
    UNKNOWN = "unknown"  # no capture with that id and index, or older than the retention
    KEPT = "kept"  # a public label may not replace a token one: the token's label stays


def insert(engine: Engine, rows: Sequence[dict]) -> None:
    """Insert capture rows (dicts of CAPTURES' columns but id) in one transaction."""
    if not rows:
        return
    # The driver's executemany with SQL compiled once: SQLAlchemy's own path spends ~100 µs of
    # Python (holding the GIL, in a serving worker) per row; the drivers' loops are C.
    sql, order = _insert_sql(engine.dialect)
    parameters = [tuple(row[name] for name in order) for row in rows] if order else list(rows)
    with engine.begin() as connection:
        connection.exec_driver_sql(sql, parameters)


@functools.cache
def _insert_sql(dialect: Dialect) -> tuple[str, tuple[str, ...] | None]:
    """The INSERT in the dialect's paramstyle, and the parameter order when it is positional."""
    columns = [column.name for column in CAPTURES.columns if column.name not in UNSET_ON_INSERT]
    compiled = CAPTURES.insert().compile(dialect=dialect, column_keys=columns)
    return str(compiled), tuple(compiled.positiontup) if compiled.positional else None


def label(engine: Engine, request_id: str, index: int, class_id: int, source: str, now: float,
          not_before: float) -> Outcome:
    """Attach a true label to the newest capture of (request_id, index) taken at or after `not_before`.

    The rule for an image labelled twice: the last label wins, except that a public label never
    replaces one given with the token (a public client could otherwise undo a curator's work).
    """
    if source not in SOURCES:
        raise ValueError(f"label source must be one of {SOURCES}, got {source!r}")
    newest = (select(CAPTURES.c.id)
              .where(CAPTURES.c.request_id == request_id, CAPTURES.c.image_index == index,
                     CAPTURES.c.captured_at >= not_before)
              .order_by(CAPTURES.c.id.desc()).limit(1))
    with engine.begin() as connection:
        row_id = connection.execute(newest).scalar_one_or_none()
        if row_id is None:
            return Outcome.UNKNOWN
        allowed = CAPTURES.c.id == row_id
        if source == "public":
            allowed = and_(allowed, or_(CAPTURES.c.label_source.is_(None), CAPTURES.c.label_source == "public"))
        changed = connection.execute(update(CAPTURES).where(allowed)
                                     .values(label=class_id, label_source=source, labelled_at=now)).rowcount
    return Outcome.RECORDED if changed else Outcome.KEPT
