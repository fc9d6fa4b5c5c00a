"""An Engine for a store URL, with the schema created: SQLite in WAL mode, PostgreSQL pooled."""
from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError

from store.schema import METADATA

# Seconds a connection attempt or a lock may take before the caller hears the store is down.
CONNECT_TIMEOUT = 5


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    # WAL: readers (feedback, the job) never block the writer; NORMAL is durable across a process
    # crash, which is what a capture needs (a power cut may lose the last few).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={CONNECT_TIMEOUT * 1000}")
    cursor.close()


def connect(url: str, create: bool = True) -> Engine:
    """An Engine for `url` (sqlite:///path or postgresql+psycopg://…); creates the table unless told not to."""
    if not url.startswith(("sqlite", "postgresql")):
        raise ValueError(f"store URL must start with sqlite:// or postgresql+psycopg://, got {url.split(':', 1)[0]!r}")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": CONNECT_TIMEOUT})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2,
                               connect_args={"connect_timeout": CONNECT_TIMEOUT})
    if create:
        create_schema(engine)
    return engine


def create_schema(engine: Engine) -> None:
    """Create the table and indexes if missing; safe when several workers start at once."""
    try:
        METADATA.create_all(engine)  # checks first, then creates
    except DBAPIError:
        # Another worker created it between our check and our CREATE (PostgreSQL says duplicate);
        # a second pass finds it. A store that is down raises again, to the caller.
        METADATA.create_all(engine)
