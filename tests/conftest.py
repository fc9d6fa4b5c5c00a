"""Shared fixtures: real data, real ONNX models in tmp_path, the real service on loopback."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import requests

from service.testing import ROOT, Server, start_server
from tests.tiny_model import publish_tiny

BUNDLED = ROOT / "models"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


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
def bundled_repo(tmp_path: Path) -> Path:
    """A private copy of the committed model repository (models/)."""
    assert (BUNDLED / "fashion-mnist").is_dir(), f"the bundled model is missing from {BUNDLED}"
    repository = tmp_path / "models"
    shutil.copytree(BUNDLED, repository, ignore=shutil.ignore_patterns(".lock", ".reports"))
    return repository


@pytest.fixture
def server(tiny_repo: Path, tmp_path: Path):
    """The real service (gunicorn, 2 workers) on a tiny model."""
    srv = start_server(tiny_repo, tmp_path)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def bundled_server(tmp_path_factory):
    """The real service on a copy of the committed models, shared by a module's read-only tests."""
    tmp = tmp_path_factory.mktemp("bundled")
    shutil.copytree(BUNDLED, tmp / "models", ignore=shutil.ignore_patterns(".lock", ".reports"))
    srv = start_server(tmp / "models", tmp)
    yield srv
    srv.stop()


@pytest.fixture
def live_metrics_text(server: Server) -> str:
    """A /metrics scrape of a running service after one request of each API."""
    png = _png(np.zeros((28, 28), dtype=np.uint8))
    requests.post(f"{server.url}/v1/classify", data=png, headers={"Content-Type": "image/png"}, timeout=10).raise_for_status()
    return requests.get(f"{server.url}/metrics", timeout=10).text


def _png(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


png_bytes = _png
