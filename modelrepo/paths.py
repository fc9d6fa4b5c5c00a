"""Where things live in a repository, and the rule that nothing read leaves it.

    <repository>/<model-name>/<version>/model.onnx
                                        metadata.json
                                        report/README.md, confusion_matrix.png, training_curves.png

Every path handed out for reading is resolved (symlinks followed) and must stay inside the
repository: a version folder or report/ linked to /etc is refused, not served.
"""
from __future__ import annotations

import re
from pathlib import Path

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
REPORT_DIR = "report"
REPORT_CARD = "README.md"
REPORT_CONFUSION = "confusion_matrix.png"
REPORT_CURVES = "training_curves.png"
REPORT_IMAGES = (REPORT_CONFUSION, REPORT_CURVES)

_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Names starting with "." are invisible to readers: publishing stages there, pruning trashes there.
STAGING_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"


class RepositoryError(Exception):
    """A model or version is missing, malformed, outside the repository or not what its metadata says."""


def valid_name(name: str) -> bool:
    """True for names that are safe as one path component (no '..', no '/')."""
    return bool(_NAME.match(name)) and name not in {".", ".."}


def parse_version(text: str) -> int | None:
    """The version number a folder name or URL segment spells, or None."""
    return int(text) if _VERSION.match(text) else None


def version_dir(repository: Path, name: str, version: int) -> Path:
    """The folder of one version (not resolved: use `inside` before reading through it)."""
    return repository / name / str(version)


def inside(repository: Path, path: Path) -> Path:
    """path with symlinks resolved, if it stays inside the repository; else RepositoryError."""
    resolved = path.resolve()
    if not resolved.is_relative_to(repository.resolve()):
        raise RepositoryError(f"{path}: resolves to {resolved}, outside the repository")
    return resolved


def report_file(repository: Path, name: str, version: int, filename: str) -> Path:
    """A file of a version's report/ folder, checked: a plain name, a regular file, inside the repository."""
    if not valid_name(name) or not _FILE.match(filename):
        raise FileNotFoundError(filename)
    path = inside(repository, version_dir(repository, name, version) / REPORT_DIR / filename)
    if not path.is_file():
        raise FileNotFoundError(filename)
    return path
