"""The IDX loader on the real Debian files, and clear errors for missing or corrupt ones."""
import gzip
import shutil
import subprocess
import sys

import numpy as np
import pytest

from training.data import FILES, DatasetError, load_data
from tests.harness import ROOT
from training.data import DEFAULT_DIR as FASHION_DIR


def test_loads_the_real_splits():
    data = load_data(FASHION_DIR)
    assert (len(data.train), len(data.validation), len(data.test)) == (55_000, 5_000, 10_000)
    assert data.train.images.shape[1:] == (28, 28, 1) and data.train.images.dtype == np.float32
    assert 0.0 == data.test.images.min() and data.test.images.max() == 1.0
    assert set(np.unique(data.test.labels)) == set(range(10))


def test_env_var_overrides_the_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match="FASHION_MNIST_DIR"):
        load_data()


def test_missing_directory_names_the_package_and_variable(tmp_path):
    result = subprocess.run([sys.executable, "-m", "training", "train", "--epochs", "1"], cwd=ROOT, capture_output=True,
                            text=True, env={"FASHION_MNIST_DIR": str(tmp_path / "nowhere"), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 2
    assert "dataset-fashion-mnist" in result.stderr and "FASHION_MNIST_DIR" in result.stderr
    assert "Traceback" not in result.stderr


def _copy(tmp_path):
    for name in FILES.values():
        shutil.copy(FASHION_DIR / name, tmp_path / name)
    return tmp_path / FILES["test_images"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: b"\x00\x00\x09\x99" + raw[4:], "bad magic number"),
        (lambda raw: raw[: len(raw) // 2], "wrong size"),
        (lambda raw: raw[:6], "truncated header"),
    ],
    ids=["magic", "truncated-body", "truncated-header"],
)
def test_corrupt_files_give_clear_errors(tmp_path, damage, message):
    path = _copy(tmp_path)
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(damage(raw), compresslevel=1))  # level 9 took seconds a case
    with pytest.raises(DatasetError, match=message):
        load_data(tmp_path)


@pytest.mark.parametrize("label", [10, 255])
def test_labels_outside_the_ten_classes_are_a_dataset_error(tmp_path, label):
    _copy(tmp_path)
    path = tmp_path / FILES["train_labels"]
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[8 + 1234] = label  # after the 8-byte header: the 1,235th label
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DatasetError, match=rf"labels outside 0-9 \(first: {label} at index 1234\)"):
        load_data(tmp_path)


def test_a_file_that_is_not_gzip(tmp_path):
    _copy(tmp_path).write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="not a readable gzip"):
        load_data(tmp_path)
