"""Repository reads that cannot block or flood: any file that is not a regular file within its
cap (a named pipe, a folder, a socket, a device, a symlink to one) is a RepositoryError at once."""
import os
import socket
import threading
from pathlib import Path

import pytest

import modelrepo
from tests.tiny_model import publish_tiny

NAME = "fashion-mnist"
# A read that has not returned by then is stuck (a FIFO read waits for a writer forever).
STUCK = 20.0


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _socket(path: Path) -> None:
    path.unlink()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))  # the file stays after the socket object is collected
    listener.close()


def _dev_zero_link(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


def _huge(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(modelrepo.MAX_MODEL_BYTES + 1)  # sparse: costs no disk


KINDS = {"fifo": _fifo, "folder": _folder, "socket": _socket, "link-to-dev-zero": _dev_zero_link}


def _finishes(call) -> object:
    """call() run in a thread: its result or exception, or a failure if it is stuck."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001  (handed to the test)
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(STUCK)
    assert not thread.is_alive(), "the read blocked"
    return outcome.get("error", outcome.get("value"))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("filename", ["metadata.json", "model.onnx"])
def test_a_version_whose_file_is_not_a_regular_file_fails_at_once(tmp_path, kind, filename):
    repo = tmp_path / "models"
    publish_tiny(repo)
    publish_tiny(repo, seed=1)
    KINDS[kind](modelrepo.version_dir(repo, NAME, 2) / filename)
    assert isinstance(_finishes(lambda: modelrepo.verify(repo, NAME, 2)), modelrepo.RepositoryError)
    assert _finishes(lambda: modelrepo.served_version(repo, NAME))[0] == 1


def test_an_oversized_model_is_refused_unread(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo)
    _huge(modelrepo.version_dir(repo, NAME, 1) / "model.onnx")
    with pytest.raises(modelrepo.RepositoryError, match="allowed"):
        modelrepo.verify(repo, NAME, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_a_decision_or_report_file_that_is_not_a_regular_file_is_never_read(tmp_path, kind):
    repo = tmp_path / "models"
    publish_tiny(repo)
    decisions = repo / NAME / modelrepo.DECISIONS_FILE
    decisions.write_text("{}")
    KINDS[kind](decisions)
    assert isinstance(_finishes(lambda: modelrepo.read_decision(repo, NAME)), modelrepo.RepositoryError)
    # Prune reads the decision first, and stops there rather than guess what is pinned.
    assert isinstance(_finishes(lambda: modelrepo.prune(repo, NAME, keep=1)), modelrepo.RepositoryError)
    report = modelrepo.version_dir(repo, NAME, 1) / "report"
    report.mkdir()
    (report / "README.md").write_text("card")
    KINDS[kind](report / "README.md")
    assert isinstance(_finishes(lambda: modelrepo.read_report(repo, NAME, 1, "README.md")), (FileNotFoundError, modelrepo.RepositoryError))


def test_read_regular_checks_the_open_descriptor(tmp_path):
    # A device reached without a symlink (a device node in the repository) is refused by fstat.
    with pytest.raises(modelrepo.NotRegular, match="character device"):
        modelrepo.read_regular(Path("/dev/zero"), 10)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 11)
    with pytest.raises(modelrepo.NotRegular, match="more than the 10"):
        modelrepo.read_regular(big, 10)
    assert modelrepo.read_regular(big, 11) == b"x" * 11
