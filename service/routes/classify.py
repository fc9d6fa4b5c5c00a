"""POST /v1/classify: images in (multipart or raw), top-k labels out. The API for people and apps."""
from __future__ import annotations

import numpy as np
from flask import Blueprint, jsonify, request

from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from service.images import to_png_base64
from service.metrics import IMAGES
from service.quality import observe
from service.routes import body, capturer, decoder, models, new_request_id, settings

bp = Blueprint("v1", __name__, url_prefix="/v1")
MAX_TOP_K = 10
_TRUE, _FALSE = ("1", "true", "yes"), ("", "0", "false", "no")


def _top_k() -> int:
    raw = request.args.get("top_k", "3")
    # isascii first: str.isdigit() accepts digits of other scripts that int() then rejects.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 2 and 1 <= int(raw) <= MAX_TOP_K):
        raise BadRequest(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {raw[:40]!r}")
    return int(raw)


def _explain() -> bool:
    raw = request.args.get("explain", "").lower()
    if raw not in _TRUE + _FALSE:
        raise BadRequest(f"explain must be one of 1, true, yes, 0, false, no, got {raw[:40]!r}")
    return raw in _TRUE


def _uploads() -> list[tuple[str | None, bytes]]:
    """(filename, bytes) for each image in the request, in order."""
    if request.mimetype == "multipart/form-data":
        files = request.files.getlist("image")
        if not files:
            raise BadRequest('no file in the multipart field "image"')
        if len(files) > settings().max_batch_images:
            raise PayloadTooLarge(f"{len(files)} images in one request, limit {settings().max_batch_images} (MAX_BATCH_IMAGES)")
        return [(f.filename or None, f.read()) for f in files]
    if request.mimetype.startswith("image/"):
        return [(None, body())]
    raise UnsupportedMediaType(f"unsupported content type {request.mimetype or 'none'!r}; "
                               'send multipart/form-data (field "image") or an image/* body')


@bp.post("/classify", defaults={"name": None})
@bp.post("/models/<name>/classify")
def classify(name: str | None):
    served = models().get(name or settings().model_name)
    top_k, explain = _top_k(), _explain()
    with served.expecting():
        uploads = _uploads()
        tensors = decoder().decode(uploads, served.image_size)
        probabilities = served.infer(tensors)
    request_id = new_request_id()
    results = []
    for index, ((filename, _), row, tensor) in enumerate(zip(uploads, probabilities, tensors)):
        best = np.argsort(-row, kind="stable")[:top_k]
        result = {"index": index, "filename": filename,
                  "top_k": [{"label": served.labels[i], "class_id": int(i), "probability": float(row[i])} for i in best]}
        if explain:
            result["preprocessed_png"] = to_png_base64(tensor)
        results.append(result)
    IMAGES.labels(served.name, str(served.version)).inc(len(results))
    observe(served, tensors, probabilities)
    if (capture := capturer()) is not None:
        capture.submit(request_id, "v1", served.name, served.version, _seen(tensors), probabilities)
    response = jsonify(request_id=request_id, model_name=served.name, model_version=str(served.version), results=results)
    response.headers["X-Request-ID"] = request_id
    return response


def _seen(tensors: np.ndarray) -> np.ndarray:
    """What the model saw, as uint8 pixels (height × width): a quarter of the float32 bytes."""
    pixels = tensors[..., 0] if tensors.shape[-1] == 1 else tensors
    return np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8)
