"""Request bodies for the three load scenarios, built from real Fashion-MNIST test images."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from training.data import IMAGES_MAGIC, dataset_dir, read_idx

BATCH = 64


@dataclass(frozen=True)
class Payload:
    scenario: str
    path: str  # URL path on the service
    content_type: str
    body: bytes
    images: int  # images per request, for img/s
    headers: dict[str, str] = field(default_factory=dict)


def test_images(n: int = BATCH) -> np.ndarray:
    """The first n test images as float32 [n, 28, 28, 1] in [0, 1], the model's input."""
    raw = read_idx(dataset_dir() / "t10k-images-idx3-ubyte.gz", IMAGES_MAGIC, (28, 28))
    return (raw[:n].astype(np.float32) / 255.0)[..., None]


def payloads(images: np.ndarray, model: str = "fashion-mnist") -> list[Payload]:
    one = images[0]
    png = io.BytesIO()
    Image.fromarray(np.round(one[..., 0] * 255).astype(np.uint8), "L").save(png, "PNG")
    as_json = {"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28, 1],
                           "data": one.ravel().round(6).tolist()}]}
    blob = np.ascontiguousarray(images[:BATCH], dtype="<f4").tobytes()
    header = json.dumps({
        "inputs": [{"name": "images", "datatype": "FP32", "shape": [BATCH, 28, 28, 1], "parameters": {"binary_data_size": len(blob)}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    }, separators=(",", ":")).encode()
    infer = f"/v2/models/{model}/infer"
    return [
        Payload("v1 png", "/v1/classify", "image/png", png.getvalue(), 1),
        Payload("v2 json", infer, "application/json", json.dumps(as_json).encode(), 1),
        Payload(f"v2 binary x{BATCH}", infer, "application/octet-stream", header + blob, BATCH,
                {"Inference-Header-Content-Length": str(len(header))}),
    ]


def write(payload: Payload, directory: Path) -> Path:
    """hey reads bodies from a file (-D); binary bodies cannot go on its command line."""
    path = directory / (payload.scenario.replace(" ", "-") + ".body")
    path.write_bytes(payload.body)
    return path
