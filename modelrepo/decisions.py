"""Operator decisions (pin a version, unload a model), shared by every process of a server.

One small JSON file, changed one decision at a time under a lock: read the file, change one
model's entry, write a new file, rename it into place. Two decisions on different models made
at the same moment by two workers both hold; on the same model the later one wins, everywhere.
Readers never lock: the rename shows them the old file or the new one, never half of either.

The retraining job reads the same file (when it can see the directory) so that pruning spares
a version an operator pinned.
"""
from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, TypeAdapter, ValidationError

FILE = "decisions.json"


class Decision(BaseModel, frozen=True):
    """What an operator decided for one model: follow the newest (default), pin, or unload."""

    pinned: int | None = None
    unloaded: bool = False


_TABLE = TypeAdapter(dict[str, Decision])


@dataclass
class Decisions:
    """The decisions file in `directory`; with None, a single process keeps them in memory."""

    directory: Path | None
    _memory: dict[str, Decision] | None = None
    _changes: int = 0

    def read(self) -> dict[str, Decision]:
        """Every model's decision; a missing or unreadable file means no decisions."""
        if self.directory is None:
            return dict(self._memory or {})
        try:
            return _TABLE.validate_json((self.directory / FILE).read_bytes())
        except (OSError, ValidationError):
            return {}

    def stamp(self) -> int:
        """Changes whenever the decisions do: a cheap check before `read`."""
        if self.directory is None:
            return self._changes
        try:
            st = (self.directory / FILE).stat()
        except OSError:
            return 0
        return hash((st.st_ino, st.st_mtime_ns, st.st_size))

    def decide(self, name: str, decision: Decision) -> None:
        """Record one model's decision, leaving every other model's as it is."""
        if self.directory is None:
            self._memory = {**(self._memory or {}), name: decision}
            self._changes += 1
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                table = self.read() | {name: decision}
                tmp = self.directory / f".{FILE}.{os.getpid()}.tmp"
                tmp.write_bytes(_TABLE.dump_json(table))
                os.replace(tmp, self.directory / FILE)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def pinned(self) -> dict[str, int]:
        """Model name → pinned version, for the models that have a pin."""
        return {name: d.pinned for name, d in self.read().items() if d.pinned is not None}
