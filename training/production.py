"""Labelled production images for the retraining job: read from the capture store, split by time,
kept as one .npz next to the version they train, and read back from it without the database.

The newest part of the labelled images (by capture time) is the production holdout: the gate
measures the candidate there (training/gate.py) and nothing ever trains on it. The older part
joins the Fashion-MNIST training images. TensorFlow is not imported here: the job decides that
there is nothing to do, or that the store is down, in about a second.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from training.data import CLASSES, Split

# Label sources the job learns from by default: only the token's. Anyone may send a public
# label, so a poisoned stream (wrong labels on purpose) would otherwise train the next model.
DEFAULT_SOURCES = ("token",)
HOLDOUT_FRACTION = 0.2
MIN_HOLDOUT = 200  # fewer and the McNemar test on the holdout can detect only gross changes
MIN_NEW_LABELS = 500
COPY_NAME = "production.npz"


class StoreUnavailable(RuntimeError):
    """The capture store could not be read (down, wrong URL, wrong credentials)."""


class NothingToDo(RuntimeError):
    """Too few new labelled images to retrain, or to hold out for the gate; the message says which."""


@dataclass(frozen=True)
class Production:
    """Labelled production images, oldest first, split by capture time into train and holdout."""

    images: np.ndarray  # float32 [N, 28, 28, 1] in [0, 1], as the model saw them
    labels: np.ndarray  # uint8 [N]
    ids: np.ndarray  # int64 [N], the store's capture ids
    captured_at: np.ndarray  # float64 [N], Unix seconds
    labelled_at: np.ndarray  # float64 [N]
    holdout_size: int

    @property
    def train(self) -> Split:
        return Split(self.images[: len(self) - self.holdout_size], self.labels[: len(self) - self.holdout_size])

    @property
    def holdout(self) -> Split:
        return Split(self.images[len(self) - self.holdout_size :], self.labels[len(self) - self.holdout_size :])

    def __len__(self) -> int:
        return len(self.labels)

    def describe(self, copy: str) -> dict:
        """What the model card records: which images (count, time range, hash of the ids) and where the copy is."""
        def iso(t: float) -> str:
            return datetime.fromtimestamp(t, timezone.utc).isoformat()

        cut = len(self) - self.holdout_size
        return {
            "images": len(self), "train_images": cut, "holdout_images": self.holdout_size,
            "captured_from": iso(self.captured_at[0]), "captured_until": iso(self.captured_at[-1]),
            "holdout_from": iso(self.captured_at[cut]), "labelled_until": float(self.labelled_at.max()),
            "ids_sha256": ids_hash(self.ids), "copy": copy,
        }


def ids_hash(ids: Iterable[int]) -> str:
    """sha256 of the capture ids in order, one decimal per line: names exactly which images were used."""
    return hashlib.sha256("".join(f"{int(i)}\n" for i in ids).encode()).hexdigest()


def as_image(raw: np.ndarray) -> np.ndarray | None:
    """A capture's input as float32 [28, 28, 1] in [0, 1], or None for a shape the model cannot take.

    v1 captures hold the 28×28 uint8 view the service made; v2 ones the tensor as sent.
    """
    if raw.size != 28 * 28:
        return None
    image = raw.astype(np.float32).reshape(28, 28, 1)
    if raw.dtype == np.uint8:
        return image / 255.0
    return image if np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1 else None


def new_labels(url: str, model: str, since: float, sources: Sequence[str]) -> int:
    """How many images of `model` were labelled after `since` (Unix seconds) from `sources`."""
    import store  # noqa: PLC0415  (SQLAlchemy and the driver, only when a store is given)

    try:
        return store.count_labelled(store.connect(url), since, model, sources)
    except Exception as exc:  # noqa: BLE001  (SQLAlchemy's and each driver's own types: all mean "cannot read")
        raise StoreUnavailable(f"capture store {_safe(url)}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None


def read(url: str, model: str, sources: Sequence[str], holdout_fraction: float = HOLDOUT_FRACTION,
         min_holdout: int = MIN_HOLDOUT) -> Production:
    """Every labelled capture of `model` from `sources`, split by capture time; raises NothingToDo when
    the newest `holdout_fraction` (at least `min_holdout`) would leave nothing to train on."""
    import store  # noqa: PLC0415

    rows = []
    try:
        for capture in store.labelled(store.connect(url), 0.0, math.inf, model, sources):
            image = as_image(capture.input)
            if image is not None and 0 <= capture.label < CLASSES:
                rows.append((capture.captured_at, capture.id, image, capture.label, capture.labelled_at))
    except Exception as exc:  # noqa: BLE001
        raise StoreUnavailable(f"capture store {_safe(url)}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    return split(rows_to_arrays(rows), holdout_fraction, min_holdout)


def rows_to_arrays(rows: list[tuple]) -> dict[str, np.ndarray]:
    """(captured_at, id, image, label, labelled_at) rows as arrays, oldest capture first (the id breaks ties)."""
    rows.sort(key=lambda r: (r[0], r[1]))
    return {
        "images": np.array([r[2] for r in rows], np.float32).reshape(-1, 28, 28, 1),
        "labels": np.array([r[3] for r in rows], np.uint8),
        "ids": np.array([r[1] for r in rows], np.int64),
        "captured_at": np.array([r[0] for r in rows], np.float64),
        "labelled_at": np.array([r[4] for r in rows], np.float64),
    }


def split(arrays: dict[str, np.ndarray], holdout_fraction: float, min_holdout: int) -> Production:
    """The newest max(⌈fraction·N⌉, min_holdout) images are the holdout; at least one must be left to train."""
    n = len(arrays["labels"])
    holdout = max(math.ceil(holdout_fraction * n), min_holdout)
    if holdout >= n:
        raise NothingToDo(f"{n} usable labelled images: too few for a production holdout of {holdout} "
                          f"(--min-holdout {min_holdout}, --holdout-fraction {holdout_fraction}) and a part to train on")
    return Production(holdout_size=holdout, **arrays)


def save(production: Production, path: Path) -> None:
    """Exactly the images and labels a version used, with their ids and times (read back by `load`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # uint8 pixels where the values allow it: a tenth of the size, read back bit for bit.
    pixels = np.round(production.images * 255)
    exact = np.array_equal(pixels / 255.0, production.images.astype(np.float64))
    np.savez_compressed(path, images=pixels.astype(np.uint8) if exact else production.images, labels=production.labels,
                        ids=production.ids, captured_at=production.captured_at, labelled_at=production.labelled_at,
                        holdout_size=np.int64(production.holdout_size))


def load(path: Path) -> Production:
    """A copy written by `save`: the same split, no database needed."""
    with np.load(path) as f:
        images = f["images"]
        return Production(
            images=(images.astype(np.float32) / 255.0) if images.dtype == np.uint8 else images,
            labels=f["labels"], ids=f["ids"], captured_at=f["captured_at"], labelled_at=f["labelled_at"],
            holdout_size=int(f["holdout_size"]),
        )


def _safe(url: str) -> str:
    """The URL without its password, for messages and reports."""
    scheme, _, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        rest = f"{credentials.split(':', 1)[0]}:***@{host}"
    return f"{scheme}://{rest}"
