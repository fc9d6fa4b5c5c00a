"""One table: each classified image as the model saw it, its prediction, and the true label once told."""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, LargeBinary, MetaData, SmallInteger, String, Table

METADATA = MetaData()
# Who gave a label: the holder of FEEDBACK_TOKEN, or anyone (public mode). The job may exclude "public".
SOURCES = ("token", "public")
MAX_ID_LENGTH = 128

CAPTURES = Table(
    "captures", METADATA,
    # BigInteger is SQLite's rowid only when spelled INTEGER; the variant keeps autoincrement on both.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("request_id", String(MAX_ID_LENGTH), nullable=False),  # v1's request_id, v2's id (client ids may repeat)
    Column("image_index", Integer, nullable=False),  # position of the image in its request
    Column("captured_at", Float, nullable=False),  # Unix seconds, UTC
    Column("api", String(8), nullable=False),  # "v1" or "v2"
    Column("model", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    # The model's input for this image: v1 the 28×28 uint8 view, v2 the tensor as sent (dtype, shape).
    Column("input", LargeBinary, nullable=False),
    Column("dtype", String(16), nullable=False),
    Column("shape", String(64), nullable=False),  # "28,28" : comma-separated, one image (no batch axis)
    Column("predicted", SmallInteger, nullable=False),
    Column("probabilities", LargeBinary, nullable=False),  # float32, one per class
    Column("label", SmallInteger, nullable=True),  # the true class id, once feedback came
    Column("label_source", String(8), nullable=True),  # one of SOURCES
    Column("labelled_at", Float, nullable=True),
)
Index("captures_by_request", CAPTURES.c.request_id, CAPTURES.c.image_index)
Index("captures_by_time", CAPTURES.c.captured_at)
Index("captures_by_label_time", CAPTURES.c.labelled_at)  # the job reads labelled captures by time
