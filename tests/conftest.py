"""Shared fixtures: real data, real ONNX models in tmp_path, the real service on loopback, and the
small client helpers several test modules use (as fixtures, so no test module imports another)."""
from __future__ import annotations

import io
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.harness import ROOT, Server, start_server
from tests.tiny_model import publish_tiny

BUNDLED_REPOSITORY = ROOT / "models"


@pytest.fixture(scope="session")
def bundled() -> Path:
    """The committed model repository (models/); read it, never write it."""
    assert (BUNDLED_REPOSITORY / "fashion-mnist").is_dir(), f"the bundled model is missing from {BUNDLED_REPOSITORY}"
    return BUNDLED_REPOSITORY


@pytest.fixture(scope="session")
def test_split():
    """The real 10,000 Fashion-MNIST test images and labels (Debian dataset-fashion-mnist)."""
    from training.data import load_data

    return load_data().test


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    """A repository holding version 1 of a tiny real model named fashion-mnist."""
    repository = tmp_path / "models"
    publish_tiny(repository)
    return repository


@pytest.fixture
def make_app(tmp_path: Path):
    """Build the app in-process (Flask's test client; no gunicorn, no front door) for a repository.

    For what the routes, the decoders and the manager do; the front door's own behaviour (framing,
    limits, health in the loop) is tested against the real server.
    """
    from service.app import create_app  # noqa: PLC0415
    from service.settings import Settings  # noqa: PLC0415

    apps = []

    def make(repository: Path, **overrides):
        settings = Settings.from_env({}, **({"model_repository": repository, "reload_poll_seconds": 0, "intra_op_threads": 1,
                                             "capture_url": f"sqlite:///{tmp_path / 'captures.db'}"} | overrides))
        apps.append(create_app(settings))
        return apps[-1]

    yield make
    for app in apps:
        app.extensions["poller"].stop()
        app.extensions["decoder"].sandbox.close()


@pytest.fixture
def bundled_repo(tmp_path: Path, bundled: Path) -> Path:
    """A private copy of the committed model repository (models/)."""
    repository = tmp_path / "models"
    shutil.copytree(bundled, repository, ignore=shutil.ignore_patterns(".lock", ".reports"))
    return repository


@pytest.fixture
def server(tiny_repo: Path, tmp_path: Path):
    """The real service (gunicorn, 2 workers) on a tiny model."""
    srv = start_server(tiny_repo, tmp_path)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def bundled_server(tmp_path_factory, bundled: Path):
    """The real service on a copy of the committed models, shared by a module's read-only tests."""
    tmp = tmp_path_factory.mktemp("bundled")
    shutil.copytree(bundled, tmp / "models", ignore=shutil.ignore_patterns(".lock", ".reports"))
    srv = start_server(tmp / "models", tmp)
    yield srv
    srv.stop()


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def png() -> Callable[[np.ndarray], bytes]:
    """uint8 pixels → PNG bytes."""
    return _png


@pytest.fixture(scope="session")
def classify() -> Callable[[str], tuple[int, str | None]]:
    """POST one light 28×28 PNG to /v1/classify: (status, the version that answered)."""
    image = _png(np.full((28, 28), 200, dtype=np.uint8))

    def post(url: str) -> tuple[int, str | None]:
        response = requests.post(f"{url}/v1/classify", data=image, headers={"Content-Type": "image/png"}, timeout=30)
        return response.status_code, response.json().get("model_version")

    return post


@pytest.fixture(scope="session")
def wait_for_version(classify) -> Callable[..., None]:
    """Until every worker serves `version` (10 answers in a row from it)."""

    def wait(url: str, version: str, timeout: float = 20) -> None:
        deadline, streak = time.monotonic() + timeout, 0
        while streak < 10:
            assert time.monotonic() < deadline, f"not all workers moved to version {version}"
            streak = streak + 1 if classify(url) == (200, version) else 0

    return wait


@pytest.fixture(scope="session")
def metric() -> Callable[[str, str], float]:
    """The sum of every /metrics sample whose line starts with a prefix."""

    def value(url: str, line_start: str) -> float:
        lines = [line for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines() if line.startswith(line_start)]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines)

    return value


@pytest.fixture
def live_metrics_text(server: Server, png) -> str:
    """A /metrics scrape of a running service after one request of each API."""
    requests.post(f"{server.url}/v1/classify", data=png(np.zeros((28, 28), dtype=np.uint8)),
                  headers={"Content-Type": "image/png"}, timeout=10).raise_for_status()
    return requests.get(f"{server.url}/metrics", timeout=10).text


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server for the session (tests/postgres.py)."""
    from tests.postgres import Postgres  # noqa: PLC0415

    server = Postgres()
    yield server
    server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> str:
    """A fresh, empty capture store: an SQLite file, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'captures.db'}"
    return request.getfixturevalue("postgres").database()


def eventually(check: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    """Poll `check` until it holds: tests wait for conditions, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="session", name="eventually")
def eventually_fixture() -> Callable[..., None]:
    return eventually
