"""Reading versions: list, read, verify, and which version a server serves."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from modelrepo.paths import METADATA_FILE, MODEL_FILE, RepositoryError, inside, parse_version, report_file, valid_name, version_dir
from modelrepo.reading import MAX_METADATA_BYTES, MAX_MODEL_BYTES, MAX_REPORT_BYTES, open_regular, read_regular
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
    """The sha256 of a regular file of at most MAX_MODEL_BYTES (never a pipe or a device)."""
    digest = hashlib.sha256()
    with open_regular(path, MAX_MODEL_BYTES) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(directory: Path) -> Metadata:
    """Parse <directory>/metadata.json, or raise RepositoryError saying why not."""
    return _parse_metadata(directory / METADATA_FILE)


def verify(repository: Path, name: str, version: int) -> Metadata:
    """Metadata of a version whose files are inside the repository and match the recorded sha256."""
    return read_verified(repository, name, version)[0]


def read_verified(repository: Path, name: str, version: int) -> tuple[Metadata, bytes]:
    """A version's metadata and the model bytes that matched its sha256 (what a server loads:
    the bytes checked are the bytes served, never the file read again)."""
    directory = version_dir(repository, name, version)
    try:
        inside(repository, directory)
        metadata = _parse_metadata(inside(repository, directory / METADATA_FILE))
        model = read_regular(inside(repository, directory / MODEL_FILE), MAX_MODEL_BYTES)
    except FileNotFoundError as exc:
        raise RepositoryError(f"{exc.filename or directory}: missing") from None
    except OSError as exc:  # a pipe, a folder or a device where a file should be; vanished; unreadable
        raise RepositoryError(f"{directory}: unreadable: {exc}") from None
    if hashlib.sha256(model).hexdigest() != metadata.sha256:
        raise RepositoryError(f"{directory / MODEL_FILE}: sha256 does not match metadata.json")
    if (metadata.name, metadata.version) != (name, version):
        raise RepositoryError(f"{directory}: metadata says {metadata.name}/{metadata.version}")
    return metadata, model


def _parse_metadata(path: Path) -> Metadata:
    try:
        return Metadata.model_validate_json(read_regular(path, MAX_METADATA_BYTES))
    except FileNotFoundError:
        raise RepositoryError(f"{path}: missing") from None
    except OSError as exc:  # a folder or a pipe where the file should be, no permission, an I/O error
        raise RepositoryError(f"{path}: unreadable: {exc.strerror or exc}") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        raise RepositoryError(f"{path}: invalid metadata: {error['loc']} {error['msg']}") from None


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


def read_report(repository: Path, name: str, version: int, filename: str) -> bytes:
    """A file of a version's report/ folder: a plain name, a regular file inside the repository, capped."""
    path = report_file(repository, name, version, filename)
    try:
        return read_regular(path, MAX_REPORT_BYTES)
    except OSError:  # replaced by a pipe or a folder since the check, grown past the cap, vanished
        raise FileNotFoundError(filename) from None
