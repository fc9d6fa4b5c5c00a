"""Pages for people: the classifier page, the model card and the API docs.

Server-rendered Jinja templates (service/templates) and plain CSS/JS (service/static): no build
step and nothing fetched from the internet. /docs serves Swagger UI from the `swagger-ui-bundle`
package when it is installed, and the spec as plain text otherwise.
"""
from __future__ import annotations

import io
from pathlib import Path

from flask import Blueprint, Response, abort, render_template, send_file, send_from_directory, url_for

from service.routes import models, settings

bp = Blueprint("web", __name__)

SPEC = Path(__file__).resolve().parents[1] / "openapi.yaml"
# Keys of metadata.training left off the model card: per-epoch series (better read as a plot)
# and the commands, which get a code block of their own.
_HIDDEN_TRAINING_KEYS = {"history", "commands"}
_MAX_LIST_ITEMS = 20
_CSP = ("default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'")
# Swagger UI sets inline styles on its elements; its scripts come from our own origin only.
_DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; object-src 'none'; "
             "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

try:  # optional: /docs falls back to the spec as text without it
    from swagger_ui_bundle import swagger_ui_path as _SWAGGER_UI
except ImportError:  # pragma: no cover - depends on the environment
    _SWAGGER_UI = None


def _page(template: str, status: int = 200, csp: str = _CSP, **context) -> Response:
    response = Response(render_template(template, **context), status=status, mimetype="text/html")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = csp
    return response


@bp.get("/")
def index():
    return _page("index.html", model_name=settings().model_name, feedback_public=settings().feedback_public)


# -- model card ---------------------------------------------------------------------------------


def _training_rows(value, depth: int = 0):
    """metadata.training as nested (key, value-or-rows) pairs, without the per-epoch history."""
    rows = []
    for key, item in value.items():
        if depth == 0 and key in _HIDDEN_TRAINING_KEYS:
            continue
        if isinstance(item, dict):
            rows.append((key, _training_rows(item, depth + 1)))
        elif isinstance(item, list) and len(item) > _MAX_LIST_ITEMS:
            rows.append((key, f"[{len(item)} values]"))
        elif isinstance(item, list):
            rows.append((key, ", ".join(str(v) for v in item)))
        elif isinstance(item, float):
            rows.append((key, f"{item:.6g}"))
        else:
            rows.append((key, str(item)))
    return rows


@bp.get("/model")
def model_card():
    card = models().card(settings().model_name)
    if card.metadata is None:
        return _page("model.html", status=503, name=card.name, metadata=None, problem=card.problem, versions=card.versions)
    metadata, labels = card.metadata, card.metadata.labels
    evaluation = metadata.evaluation
    confusion = evaluation.confusion_matrix if evaluation else []
    if confusion and (len(confusion) != len(labels) or any(len(r) != len(labels) for r in confusion)):
        confusion = []  # a matrix that does not match the labels cannot be labelled: show the image only
    commands = metadata.training.get("commands")
    return _page(
        "model.html", name=card.name, metadata=metadata, version=card.version, served=card.served, problem=card.problem,
        evaluation=evaluation, confusion=confusion, training=_training_rows(metadata.training),
        commands=commands if isinstance(commands, list) and all(isinstance(c, str) for c in commands) else [],
        images={f: url_for("web.report_file", version=card.version, filename=f) for f in card.images}, versions=card.versions,
    )


@bp.get("/model/report/<version>/<filename>")
def report_file(version: str, filename: str):
    """A file of one version's report/ folder, for the default model only."""
    data = models().report_file(settings().model_name, version, filename)  # read safely, never a path
    return send_file(io.BytesIO(data), download_name=filename, max_age=3600)


# -- API docs -------------------------------------------------------------------------------------


@bp.get("/openapi.yaml")
def openapi_spec():
    return send_file(SPEC, mimetype="application/yaml", max_age=300)


@bp.get("/docs")
def docs():
    if _SWAGGER_UI is None:
        return _page("docs_plain.html", spec=SPEC.read_text(encoding="utf-8"))
    return _page("docs.html", csp=_DOCS_CSP)


@bp.get("/docs/assets/<path:filename>")
def docs_asset(filename: str):
    if _SWAGGER_UI is None:
        abort(404)
    return send_from_directory(str(_SWAGGER_UI), filename, max_age=86400)
