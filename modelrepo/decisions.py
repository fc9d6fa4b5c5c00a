"""Operator decisions (pin a version, unload a model), kept in the repository next to the versions.

    <repository>/<model-name>/decisions.json      {"pinned": 1, "unloaded": false}

One small file per model; no file means no decision (servers follow their MODEL_VERSION, else
the newest version). Every worker of every replica polls it and the retraining job reads it, so
a rollback made through any replica's API reaches the whole fleet, survives restarts, and is
spared by prune. It is written as a version is published: under the model's lock, staged,
fsynced, renamed into place. Readers never lock: the rename shows them the old file or the new one.
"""
from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from modelrepo.locking import locked, replace_file
from modelrepo.paths import RepositoryError, inside, valid_name
from modelrepo.reading import MAX_DECISIONS_BYTES, read_regular
from modelrepo.store import list_versions

DECISIONS_FILE = "decisions.json"


class Decision(BaseModel, frozen=True):
    """What an operator decided for one model: follow the newest, pin a version, or unload."""

    pinned: int | None = Field(None, ge=1)
    unloaded: bool = False


class Unwritable(RepositoryError):
    """This process cannot write the model's decision (a read-only mount, no permission): nothing was recorded."""


def decision_path(repository: Path, name: str) -> Path:
    """Where one model's decision lives."""
    if not valid_name(name):
        raise RepositoryError(f"invalid model name {name!r}")
    return repository / name / DECISIONS_FILE


def read_decision(repository: Path, name: str) -> Decision | None:
    """The model's recorded decision; None when there is none. RepositoryError when the file
    cannot be read or is not a decision: callers keep what they had (and prune spares nothing less)."""
    path = decision_path(repository, name)
    try:
        data = read_regular(inside(repository, path), MAX_DECISIONS_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:  # a pipe, a folder or a device in its place; no permission
        raise RepositoryError(f"{path}: unreadable: {exc}") from None
    try:
        return Decision.model_validate_json(data)
    except ValidationError as exc:
        raise RepositoryError(f"{path}: not a decision: {exc.errors()[0]['msg']}") from None


def decision_stamp(repository: Path, name: str) -> tuple:
    """Changes whenever the model's decision does: a cheap check before `read_decision`."""
    try:
        st = os.stat(decision_path(repository, name))
    except FileNotFoundError:
        return ()
    except (OSError, RepositoryError) as exc:
        return ("unreadable", str(exc))
    return st.st_ino, st.st_mtime_ns, st.st_size


def record_decision(repository: Path, name: str, decision: Decision | None) -> None:
    """Record one model's decision for every worker, replica and the retraining job; None clears it.

    Under the model's lock, so a pin and a prune never cross: a pin to a version that is no
    longer on disk is refused (RepositoryError), and a prune that comes after spares it.
    Raises Unwritable when this process cannot write it (a read-only mount, most often).
    """
    path = decision_path(repository, name)
    try:
        os.stat(path.parent)
    except FileNotFoundError:  # never create a model folder for a decision about nothing
        raise RepositoryError(f"no model {name!r} in {repository}") from None
    except OSError:
        pass  # unreachable or unreadable here: taking the lock below says which (Unwritable)
    try:
        with locked(path.parent):
            if decision is not None and decision.pinned is not None and decision.pinned not in list_versions(repository, name):
                raise RepositoryError(f"no version {decision.pinned} of {name!r} on disk")
            if decision is None:
                path.unlink(missing_ok=True)
            else:
                replace_file(path, decision.model_dump_json().encode())
    except OSError as exc:  # EROFS, EACCES: whatever the reason, nothing was written
        raise Unwritable(f"cannot record a decision for {name!r} in {repository}: {exc.strerror or exc}") from None
