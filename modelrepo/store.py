"""Reading versions: list, read, verify, and which version a server serves."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from modelrepo.paths import (
    METADATA_FILE,
    MODEL_FILE,
    RepositoryError,
    inside,
    parse_version,
    valid_name,
    version_dir,
)
from modelrepo.schema import Metadata


def list_models(repository: Path) -> list[str]:
    """Model names in the repository, sorted; an unreadable repository lists none."""
    try:
        entries = list(repository.iterdir())
    except OSError:
        return []
    return sorted(p.name for p in entries if valid_name(p.name) and not p.name.startswith(".") and _is_dir(p))


def list_versions(repository: Path, name: str) -> list[int]:
    """Published versions of a model, ascending: numbered folders only, never staging or trash.

    A numbered entry that is not a folder, or that a symlink takes outside the repository, is
    not a version. Raises RepositoryError when the model folder exists but cannot be listed.
    """
    root = repository / name
    if not valid_name(name):
        return []
    try:
        entries = list(root.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise RepositoryError(f"{root}: cannot list versions: {exc}") from None
    versions = []
    for entry in entries:
        version = parse_version(entry.name)
        if version is not None and _is_dir(entry) and _stays_inside(repository, entry):
            versions.append(version)
    return sorted(versions)


def newest_version(repository: Path, name: str) -> int | None:
    """The highest version number on disk, valid or not (publishing allocates after it)."""
    versions = list_versions(repository, name)
    return versions[-1] if versions else None


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
    except OSError as exc:  # a folder where the file should be, no permission, an I/O error
        raise RepositoryError(f"{path}: unreadable: {exc.strerror or exc}") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        raise RepositoryError(f"{path}: invalid metadata: {error['loc']} {error['msg']}") from None


def verify(repository: Path, name: str, version: int) -> Metadata:
    """Metadata of a version whose files are inside the repository and match the recorded sha256."""
    directory = version_dir(repository, name, version)
    try:
        inside(repository, directory)
        metadata = read_metadata(inside(repository, directory / METADATA_FILE).parent)
        model = inside(repository, directory / MODEL_FILE)
        if not model.is_file():
            raise RepositoryError(f"{directory / MODEL_FILE}: missing or not a file")
        if sha256_file(model) != metadata.sha256:
            raise RepositoryError(f"{directory / MODEL_FILE}: sha256 does not match metadata.json")
    except OSError as exc:  # vanished or unreadable between the checks above
        raise RepositoryError(f"{directory}: unreadable: {exc}") from None
    if (metadata.name, metadata.version) != (name, version):
        raise RepositoryError(f"{directory}: metadata says {metadata.name}/{metadata.version}")
    return metadata


def candidates(repository: Path, name: str, pinned: int | None = None) -> Iterator[int]:
    """Versions a server tries, best first: the pin alone, or every version newest first."""
    if pinned is not None:
        yield pinned
        return
    yield from reversed(list_versions(repository, name))


def served_version(repository: Path, name: str, pinned: int | None = None) -> tuple[int, Metadata] | None:
    """The version a server would serve and its metadata: the pin, else the newest that verifies.

    The service tries the same `candidates` in the same order (and also opens and warms each up).
    """
    for version in candidates(repository, name, pinned):
        try:
            return version, verify(repository, name, version)
        except RepositoryError:
            continue
    return None


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _stays_inside(repository: Path, path: Path) -> bool:
    try:
        inside(repository, path)
    except (RepositoryError, OSError):
        return False
    return True
