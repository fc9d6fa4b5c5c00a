"""Reading repository files so that no file can block or flood a reader.

A named pipe as metadata.json once stopped a poller for good: `read_bytes()` waited for a writer
that never came. Every read of a repository file goes through `read_regular` (or `open_regular`,
for hashing): the file is opened without blocking and without following a final symlink, the
open descriptor is checked to be a regular file no larger than its cap, and only then read. A
FIFO, a directory, a socket, a device (a symlink to /dev/zero) or an oversized file is a
RepositoryError, like any other broken version.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

# Caps on what one file may hold: far above any real file, far below what would hurt a worker.
MAX_METADATA_BYTES = 1 << 20  # metadata.json: ~10 kB with an evaluation and a confusion matrix
MAX_DECISIONS_BYTES = 64 << 10  # decisions.json: a few dozen bytes
MAX_REPORT_BYTES = 16 << 20  # report/README.md and its PNGs: ~100 kB each
# model.onnx: the fp32 CNN is 5.6 MB; 256 MiB leaves room for far larger models while a worker
# holding the bytes, its session and the version it replaces still fits a 1 GiB pod.
MAX_MODEL_BYTES = 256 << 20


class NotRegular(OSError):
    """A repository path that is not a regular file within its cap (it is never read)."""


@contextmanager
def open_regular(path: Path, limit: int) -> Iterator[BinaryIO]:
    """path opened for reading, once checked to be a regular file of at most `limit` bytes."""
    # O_NONBLOCK: opening a FIFO returns at once (and a file with a write lease fails instead
    # of waiting). O_NOFOLLOW: a final symlink is refused; callers resolve paths with `inside`.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)  # the descriptor, not the path: what is checked is what is read
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(f"{path}: not a regular file ({_kind(st.st_mode)})")
        if st.st_size > limit:
            raise NotRegular(f"{path}: {st.st_size} bytes, more than the {limit} allowed")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; NotRegular (an OSError) otherwise."""
    with open_regular(path, limit) as f:
        data = f.read(limit + 1)  # a file that grew after fstat is still cut at the cap
    if len(data) > limit:
        raise NotRegular(f"{path}: more than the {limit} bytes allowed")
    return data


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link"))
    return next((name for test, name in kinds if test(mode)), "not a file")
