"""Admin decisions shared by all gunicorn workers through one small file.

An admin call (load a version, unload) reaches one worker; that worker applies it and writes
the new state here, and every other worker's poller applies it within a second. The file is
replaced atomically, so a reader sees the old state or the new one, never half of either.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

CONTROL_FILE = "control.json"


def write(directory: Path | None, state: dict) -> None:
    """Replace the shared state (a no-op in a single process without CONTROL_DIR)."""
    if directory is None:
        return
    path = directory / CONTROL_FILE
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


class Reader:
    """Reads the shared state when it has changed since the last read."""

    def __init__(self, directory: Path | None):
        self._path = directory / CONTROL_FILE if directory else None
        self._seen = 0

    def read(self) -> dict | None:
        """The new state, or None when there is none or nothing changed."""
        if self._path is None:
            return None
        try:
            mtime = self._path.stat().st_mtime_ns
            if mtime == self._seen:
                return None
            state = json.loads(self._path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        self._seen = mtime
        return state
