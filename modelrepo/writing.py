"""Writing versions: publish atomically, prune safely, clean up after crashes.

Both run under the model's lock (modelrepo/locking.py), so two publishers never get the same
number, a pruner never races a publisher or an operator's pin, and whatever a crash left behind
(hidden staging or trash folders) is removed by the next one to take the lock.
"""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from modelrepo.decisions import read_decision
from modelrepo.locking import DIR_MODE, FILE_MODE, fsync_dir, locked
from modelrepo.paths import METADATA_FILE, MODEL_FILE, STAGING_PREFIX, TRASH_PREFIX, RepositoryError, valid_name, version_dir
from modelrepo.schema import Metadata
from modelrepo.store import list_versions, newest_version, served_version, sha256_file


class Rejected(RepositoryError):
    """The promotion gate refused a candidate; nothing was published."""


def publish(
    repository: Path,
    name: str,
    staging: Path,
    metadata: Metadata,
    accept: Callable[[], bool] | None = None,
) -> int:
    """Copy staging/ (holding model.onnx, optional report/) in as the next version; return it.

    Under the model's lock: `accept()` may veto (Rejected is raised), the number after the
    highest numbered folder is allocated (so a corrupt newest version never blocks this), files
    are written, made world-readable and fsynced in a hidden folder, and one rename makes the
    version visible. A crash at any point leaves at most a hidden folder.
    """
    if not valid_name(name):
        raise RepositoryError(f"invalid model name {name!r}")
    unranged = [spec.name for spec in metadata.inputs if spec.range is None]
    if unranged:
        # The service refuses values outside the range; without one, a CNN fed 3e38 answers NaN.
        raise RepositoryError(f"{name}: inputs {unranged} declare no value range (TensorSpec.range); "
                              "every published version must say what values it was trained on")
    root = repository / name
    with locked(root):
        if accept is not None and not accept():
            raise Rejected(f"candidate for {name} rejected")
        version = (newest_version(repository, name) or 0) + 1
        tmp = root / f"{STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
        shutil.copytree(staging, tmp, symlinks=False)
        final = metadata.model_copy(update={"name": name, "version": version, "sha256": sha256_file(tmp / MODEL_FILE)})
        (tmp / METADATA_FILE).write_text(final.model_dump_json(indent=2))
        _make_readable(tmp)
        _fsync_tree(tmp)
        os.rename(tmp, version_dir(repository, name, version))
        fsync_dir(root)
    return version


def prune(repository: Path, name: str, keep: int, protect: Iterable[int] = ()) -> list[int]:
    """Delete all but the newest `keep` versions; return the deleted ones.

    Never deleted: the newest version, the one a server following the newest serves (the
    newest that verifies), the one an operator's decision pins, and `protect` (MODEL_VERSION,
    the version a promotion replaced). The decision is read under the lock a pin is recorded
    under, so the two never cross; an unreadable one stops the prune before anything is deleted.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    removed = []
    with locked(repository / name):
        versions = list_versions(repository, name)
        served = served_version(repository, name)
        decision = read_decision(repository, name)
        pinned = [decision.pinned] if decision is not None and decision.pinned is not None else []
        spared = {*protect, *pinned, *versions[-1:], *([served[0]] if served else [])}
        doomed = [v for v in versions[:-keep] if v not in spared]
        links = [v for v in doomed if version_dir(repository, name, v).is_symlink()]
        if links:
            # A linked version was arranged by hand; deleting through the link is not ours to do.
            raise RepositoryError(f"{name}: versions {links} are symbolic links; prune removes only the folders "
                                  "it published (remove the links by hand, or protect them)")
        for version in doomed:
            path = version_dir(repository, name, version)
            # Rename first so that a reader never sees a half-deleted version.
            trash = path.with_name(f"{TRASH_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
            os.rename(path, trash)
            shutil.rmtree(trash)
            removed.append(version)
    return removed


def _make_readable(top: Path) -> None:
    top.chmod(DIR_MODE)
    for dirpath, dirnames, filenames in os.walk(top):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), DIR_MODE)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), FILE_MODE)


def _fsync_tree(top: Path) -> None:
    for dirpath, _, filenames in os.walk(top):
        for filename in filenames:
            with open(os.path.join(dirpath, filename), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(dirpath))
