"""HTTP routes, one blueprint per API, and the few helpers they share: HTTP only, no model state."""
from __future__ import annotations

import uuid

from flask import current_app, request

from service.capture import Capturer
from service.errors import UnsupportedMediaType
from service.images import Decoder
from service.models import ModelManager
from service.protocol import T, parse
from service.settings import Settings


def models() -> ModelManager:
    return current_app.extensions["models"]


def settings() -> Settings:
    return current_app.extensions["settings"]


def decoder() -> Decoder:
    return current_app.extensions["decoder"]


def capturer() -> Capturer | None:
    """The worker's capture queue, None when CAPTURE_ENABLED is off."""
    return current_app.extensions.get("capture")


def new_request_id() -> str:
    """A fresh id for an answer: 32 hex digits, unguessable (it addresses the image for feedback)."""
    return uuid.uuid4().hex


def body() -> bytes:
    """The request body: the front door (service/http/parser.py) refused it past MAX_REQUEST_BYTES."""
    return request.get_data(cache=False)


def json_body(model: type[T]) -> T:
    """An optional JSON body as a typed model; any other content type is refused, never ignored."""
    raw = body()
    if not raw.strip():
        return model()
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(f"send the body as application/json (curl: -H 'Content-Type: application/json'), "
                                   f"got {request.mimetype or 'no content type'!r}")
    return parse(model, raw)
