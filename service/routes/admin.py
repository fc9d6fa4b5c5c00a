"""The OIP model repository extension: index for everyone, load/unload for operators."""
from __future__ import annotations

import hmac

from flask import Blueprint, jsonify, request

from service.errors import BadRequest, Forbidden, Unauthorized
from service.protocol import RepositoryRequest
from service.routes import json_body, models, settings

bp = Blueprint("admin", __name__, url_prefix="/v2/repository")


def _authorize() -> None:
    token = settings().admin_token
    if not token:
        raise Forbidden("the repository API is disabled: set ADMIN_TOKEN to enable it")
    sent = request.headers.get("Authorization", "")
    if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        raise Unauthorized("missing or wrong bearer token")


def _version(body: RepositoryRequest) -> int | None:
    version = body.parameters.version if body.parameters else None
    if version is None:
        return None
    text = str(version)
    if not (text.isascii() and text.isdigit() and len(text) <= 9 and int(text) >= 1):
        raise BadRequest(f"parameters.version must be a version number, got {version!r}")
    return int(text)


@bp.post("/index")
@bp.get("/index")
def index():
    return jsonify(models().index())


@bp.post("/models/<name>/load")
def load(name: str):
    _authorize()
    version = _version(json_body(RepositoryRequest))
    served = models().load(name, version)
    return jsonify(name=name, version=str(served.version), state="READY")


@bp.post("/models/<name>/unload")
def unload(name: str):
    _authorize()
    if _version(json_body(RepositoryRequest)) is not None:
        raise BadRequest("unload takes no version: it stops serving the model")
    models().unload(name)
    return jsonify(name=name, state="UNAVAILABLE")
