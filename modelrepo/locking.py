"""The model's lock, and durable writes: what every writer of the repository holds and does.

Publishing, pruning and recording a decision all run under `<repository>/<name>/.lock`, so two
writers never interleave and whatever a crashed one left behind (hidden staging or trash
entries) is removed by the next one to take the lock.
"""
from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelrepo.paths import STAGING_PREFIX, TRASH_PREFIX

# Readable by every user, whatever the umask or the staging folder's mode: the server often
# runs as another uid than the trainer (the Kubernetes pods do).
DIR_MODE, FILE_MODE = 0o755, 0o644


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """The model's lock (flock serialises writers on one host and on most shared filesystems).

    Whoever takes it first removes what a crashed writer left: nobody else can be writing.
    """
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(DIR_MODE)
    with open(root / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _remove_leftovers(root)
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def replace_file(path: Path, data: bytes) -> None:
    """Write path atomically and durably: stage a hidden file, fsync it, rename it, fsync the folder."""
    tmp = path.with_name(f"{STAGING_PREFIX}{path.name}-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fchmod(f.fileno(), FILE_MODE)
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or an unlink in path durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_leftovers(root: Path) -> None:
    for prefix in (STAGING_PREFIX, TRASH_PREFIX):
        for leftover in root.glob(f"{prefix}*"):
            if leftover.is_symlink() or not leftover.is_dir():
                leftover.unlink(missing_ok=True)  # a staged decisions file, or a link
            else:
                shutil.rmtree(leftover, ignore_errors=True)
