"""Versions on disk: list, read, verify, publish atomically, prune."""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from modelrepo.schema import Metadata

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Names starting with "." are invisible to readers: publishing stages there, pruning trashes there.
_STAGING_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"


class RepositoryError(Exception):
    """A model or version is missing, malformed or does not match its metadata."""


class Rejected(RepositoryError):
    """The promotion gate refused a candidate; nothing was published."""


def valid_name(name: str) -> bool:
    """True for names that are safe as one path component (no '..', no '/')."""
    return bool(_NAME.match(name)) and name not in {".", ".."}


def list_models(repository: Path) -> list[str]:
    """Model names in the repository, sorted."""
    if not repository.is_dir():
        return []
    return sorted(p.name for p in repository.iterdir() if p.is_dir() and valid_name(p.name) and not p.name.startswith("."))


def list_versions(repository: Path, name: str) -> list[int]:
    """Published versions of a model, ascending; staging and trash folders never appear."""
    root = repository / name
    if not valid_name(name) or not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if _VERSION.match(p.name) and p.is_dir())


def newest_version(repository: Path, name: str) -> int | None:
    versions = list_versions(repository, name)
    return versions[-1] if versions else None


def version_dir(repository: Path, name: str, version: int) -> Path:
    return repository / name / str(version)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(directory: Path) -> Metadata:
    """Parse <directory>/metadata.json, or raise RepositoryError saying why not."""
    path = directory / METADATA_FILE
    try:
        return Metadata.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise RepositoryError(f"{path}: missing") from None
    except ValidationError as exc:
        raise RepositoryError(f"{path}: invalid metadata: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}") from None


def verify(directory: Path) -> Metadata:
    """Metadata of a version folder whose model file exists and matches the recorded sha256."""
    metadata = read_metadata(directory)
    model = directory / MODEL_FILE
    if not model.is_file():
        raise RepositoryError(f"{model}: missing")
    if sha256_file(model) != metadata.sha256:
        raise RepositoryError(f"{model}: sha256 does not match metadata.json")
    if directory.name.isdigit() and int(directory.name) != metadata.version:
        raise RepositoryError(f"{directory}: metadata says version {metadata.version}")
    return metadata


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    # flock serialises publishers on one host (and on most shared filesystems that honour it).
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fsync_tree(top: Path) -> None:
    for dirpath, _, filenames in os.walk(top):
        for filename in filenames:
            with open(os.path.join(dirpath, filename), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(
    repository: Path,
    name: str,
    staging: Path,
    metadata: Metadata,
    accept: Callable[[Metadata | None], bool] | None = None,
) -> int:
    """Copy staging/ (holding model.onnx, optional report/) in as the next version; return it.

    Under the model's lock: `accept(current newest metadata)` may veto (raising Rejected), the
    version number is allocated, files are written and fsynced in a hidden folder, and one
    rename makes the version visible. A crash at any point leaves at most a hidden folder,
    which the next publisher removes.
    """
    if not valid_name(name):
        raise RepositoryError(f"invalid model name {name!r}")
    root = repository / name
    with _locked(root):
        for leftover in root.glob(f"{_STAGING_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)
        current = newest_version(repository, name)
        current_meta = read_metadata(version_dir(repository, name, current)) if current else None
        if accept is not None and not accept(current_meta):
            raise Rejected(f"candidate rejected against version {current}")
        version = (current or 0) + 1
        tmp = root / f"{_STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
        shutil.copytree(staging, tmp)
        final = metadata.model_copy(update={"name": name, "version": version, "sha256": sha256_file(tmp / MODEL_FILE)})
        (tmp / METADATA_FILE).write_text(final.model_dump_json(indent=2))
        _fsync_tree(tmp)
        os.rename(tmp, version_dir(repository, name, version))
        _fsync_dir(root)
    return version


def prune(repository: Path, name: str, keep: int, protect: set[int] = frozenset()) -> list[int]:
    """Delete all but the newest `keep` versions, sparing `protect` and always the newest."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    removed = []
    with _locked(repository / name):
        versions = list_versions(repository, name)
        for version in versions[:-keep]:
            if version in protect:
                continue
            path = version_dir(repository, name, version)
            # Rename first so that a reader never sees a half-deleted version.
            trash = path.with_name(f"{_TRASH_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
            os.rename(path, trash)
            shutil.rmtree(trash)
            removed.append(version)
    return removed
