"""The OIP model repository extension: index for everyone, load/unload for operators."""
from __future__ import annotations

import hmac

from flask import Blueprint, jsonify, request

import modelrepo
from service.errors import BadRequest, Forbidden, ModelNotFound, Unauthorized
from service.routes import registry, settings

bp = Blueprint("admin", __name__, url_prefix="/v2/repository")


def _authorize() -> None:
    token = settings().admin_token
    if not token:
        raise Forbidden("the repository API is disabled: set ADMIN_TOKEN to enable it")
    sent = request.headers.get("Authorization", "")
    if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        raise Unauthorized("missing or wrong bearer token")


def _known(name: str) -> None:
    if not modelrepo.valid_name(name) or name not in modelrepo.list_models(settings().model_repository):
        raise ModelNotFound(f"unknown model {name!r}")


@bp.post("/index")
@bp.get("/index")
def index():
    return jsonify(registry().index())


@bp.post("/models/<name>/load")
def load(name: str):
    _authorize()
    _known(name)
    body = request.get_json(silent=True) or {}
    version = (body.get("parameters") or {}).get("version")
    if version is not None and not str(version).isdigit():
        raise BadRequest(f'parameters.version must be a version number, got {version!r}')
    registry().load(name, int(version) if version is not None else None)
    registry().publish_control()
    served = registry().get(name)
    return jsonify(name=name, version=str(served.version), state="READY")


@bp.post("/models/<name>/unload")
def unload(name: str):
    _authorize()
    _known(name)
    registry().unload(name)
    registry().publish_control()
    return jsonify(name=name, state="UNAVAILABLE")
