"""Request bodies for the load scenarios, built from real Fashion-MNIST test images.

The service gets v1 PNG, v2 JSON and v2 binary bodies; the naive baseline gets the same pixels
(rounded to the same 6 decimals as the v2 JSON) as {"instances": [...]}.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from training.data import IMAGES_MAGIC, dataset_dir, read_idx

BATCH = 64
SCENARIOS = ("v1 png", "v2 json", f"v2 binary x{BATCH}")  # the service's, in the order payloads() returns them


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


def payloads(images: np.ndarray, model: str = "fashion-mnist", batch: int = BATCH) -> list[Payload]:
    """Single-image /v1 PNG and v2 JSON bodies, and a `batch`-image v2 binary body."""
    one = images[0]
    png = io.BytesIO()
    Image.fromarray(np.round(one[..., 0] * 255).astype(np.uint8), "L").save(png, "PNG")
    as_json = {"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28, 1],
                           "data": one.ravel().round(6).tolist()}]}
    blob = np.ascontiguousarray(images[:batch], dtype="<f4").tobytes()
    header = json.dumps({
        "inputs": [{"name": "images", "datatype": "FP32", "shape": [batch, 28, 28, 1], "parameters": {"binary_data_size": len(blob)}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    }, separators=(",", ":")).encode()
    infer = f"/v2/models/{model}/infer"
    return [
        Payload(SCENARIOS[0], "/v1/classify", "image/png", png.getvalue(), 1),
        Payload(SCENARIOS[1], infer, "application/json", json.dumps(as_json).encode(), 1),
        Payload(SCENARIOS[2] if batch == BATCH else f"v2 binary x{batch}", infer, "application/octet-stream", header + blob, batch,
                {"Inference-Header-Content-Length": str(len(header))}),
    ]


def naive_payloads(images: np.ndarray) -> list[Payload]:
    """The naive app's bodies: one image, and BATCH images (its equivalent of the v2 binary rows)."""
    def instances(n: int) -> bytes:
        return json.dumps({"instances": images[:n].reshape(n, -1).round(6).tolist()}).encode()

    return [Payload("instances json", "/predict", "application/json", instances(1), 1),
            Payload(f"instances json x{BATCH}", "/predict", "application/json", instances(BATCH), BATCH)]


def write(payload: Payload, directory: Path) -> Path:
    """Load generators read bodies from a file (hey -D, wrk's Lua script): binary bodies cannot go on a command line."""
    path = directory / (payload.scenario.replace(" ", "-") + ".body")
    path.write_bytes(payload.body)
    return path
