"""Fashion-MNIST from the IDX gz files of Debian's `dataset-fashion-mnist` package.

There is no download fallback on purpose: these machines have no internet, and a silent
download elsewhere would make training depend on where it runs.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "FASHION_MNIST_DIR"
VALIDATION_SIZE = 5_000

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# IDX magic numbers: 0x00000803 = unsigned bytes, 3 dims; 0x00000801 = unsigned bytes, 1 dim.
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
CLASSES = 10


class DatasetError(RuntimeError):
    """The dataset is missing or unreadable; the message says what to do."""


@dataclass(frozen=True)
class Split:
    """Images as float32 [N, 28, 28, 1] in [0, 1] and labels as uint8 [N]."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> "Split":
        """The first n examples (all of them when n is None)."""
        return self if n is None else Split(self.images[:n], self.labels[:n])


@dataclass(frozen=True)
class Dataset:
    train: Split
    validation: Split
    test: Split


def dataset_dir() -> Path:
    """The directory holding the IDX files: $FASHION_MNIST_DIR or the Debian location."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)


def read_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """One IDX gz file as a uint8 array, after checking its magic number and size."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable gzip file ({exc})") from None
    ndim = 1 + len(item_shape)
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DatasetError(f"{path}: truncated header ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DatasetError(f"{path}: bad magic number {found:#010x}, expected {magic:#010x}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if dims[1:] != item_shape:
        raise DatasetError(f"{path}: items of shape {dims[1:]}, expected {item_shape}")
    expected = header_size + int(np.prod(dims))
    if len(raw) != expected:
        raise DatasetError(f"{path}: wrong size, {len(raw)} bytes where the header implies {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)


def _images(path: Path) -> np.ndarray:
    # The model wants [N, 28, 28, 1] float32 in [0, 1]: the same contract the ONNX input states.
    raw = read_idx(path, IMAGES_MAGIC, (28, 28))
    return (raw.astype(np.float32) / 255.0)[..., np.newaxis]


def _labels(path: Path) -> np.ndarray:
    labels = read_idx(path, LABELS_MAGIC, ())
    # A label of 10 or more would index past the one-hot and confusion-matrix columns, or
    # train silently on a class that does not exist.
    bad = np.flatnonzero(labels >= CLASSES)
    if bad.size:
        raise DatasetError(f"{path}: {bad.size} labels outside 0-{CLASSES - 1} (first: {int(labels[bad[0]])} at index {int(bad[0])})")
    return labels


def load_data(directory: Path | None = None) -> Dataset:
    """Train (55k), validation (5k, the last of the training file) and test (10k) splits."""
    directory = Path(directory) if directory else dataset_dir()
    missing = [name for name in FILES.values() if not (directory / name).is_file()]
    if missing:
        raise DatasetError(
            f"Fashion-MNIST not found in {directory} (missing {', '.join(missing)}). "
            f"Install it with `apt-get install dataset-fashion-mnist`, "
            f"or point {ENV_VAR} at a directory holding the IDX gz files."
        )
    train_x, train_y = _images(directory / FILES["train_images"]), _labels(directory / FILES["train_labels"])
    test_x, test_y = _images(directory / FILES["test_images"]), _labels(directory / FILES["test_labels"])
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise DatasetError(f"{directory}: image and label counts differ")
    cut = len(train_x) - VALIDATION_SIZE
    return Dataset(
        train=Split(train_x[:cut], train_y[:cut]),
        validation=Split(train_x[cut:], train_y[cut:]),
        test=Split(test_x, test_y),
    )
