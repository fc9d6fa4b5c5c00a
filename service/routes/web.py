"""Pages for people: the classifier page, the model card and the API docs.

Server-rendered Jinja templates (service/templates) and plain CSS/JS (service/static): no build
step and nothing fetched from the internet. /docs serves Swagger UI from the `swagger-ui-bundle`
package when it is installed, and the spec as plain text otherwise.
"""
from __future__ import annotations

import re
from pathlib import Path

from flask import Blueprint, Response, abort, render_template, send_file, send_from_directory, url_for

import modelrepo
from modelrepo.schema import Metadata
from service.errors import ServingError
from service.routes import registry, settings

bp = Blueprint("web", __name__)

SPEC = Path(__file__).resolve().parents[1] / "openapi.yaml"
REPORT_DIR = "report"
_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")
# Keys of metadata.training left off the model card: per-epoch series, long and better read as a plot.
_LONG_TRAINING_KEYS = {"history"}
_MAX_LIST_ITEMS = 20
# Pages we write ourselves get a strict policy; Swagger UI's page is left without one.
_CSP = ("default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'")

try:  # optional: /docs falls back to the spec as text without it
    from swagger_ui_bundle import swagger_ui_path as _SWAGGER_UI
except ImportError:  # pragma: no cover - depends on the environment
    _SWAGGER_UI = None


def _page(template: str, status: int = 200, csp: bool = True, **context) -> Response:
    response = Response(render_template(template, **context), status=status, mimetype="text/html")
    response.headers["X-Content-Type-Options"] = "nosniff"
    if csp:
        response.headers["Content-Security-Policy"] = _CSP
    return response


@bp.get("/")
def index():
    return _page("index.html", model_name=settings().model_name)


# -- model card ---------------------------------------------------------------------------------


def _card_metadata(name: str) -> tuple[Metadata | None, int | None, bool, str]:
    """(metadata, version, served?, problem) for the card: the served version, else the newest on disk."""
    try:
        served = registry().get(name)
        return served.runtime.metadata, served.version, True, ""
    except ServingError as exc:
        problem = str(exc)
    for version in reversed(registry().versions(name)):
        try:
            return modelrepo.read_metadata(modelrepo.version_dir(settings().model_repository, name, version)), version, False, problem
        except modelrepo.RepositoryError:
            continue
    return None, None, False, problem


def _training_rows(value, depth: int = 0):
    """metadata.training as nested (key, value-or-rows) pairs, without the long per-epoch history."""
    rows = []
    for key, item in value.items():
        if depth == 0 and key in _LONG_TRAINING_KEYS:
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


def _report_images(name: str, version: int) -> dict[str, str]:
    """URLs of the report images that exist for this version, by file name."""
    folder = modelrepo.version_dir(settings().model_repository, name, version) / REPORT_DIR
    wanted = ("confusion_matrix.png", "training_curves.png")
    return {f: url_for("web.report_file", version=version, filename=f) for f in wanted if (folder / f).is_file()}


@bp.get("/model")
def model_card():
    name = settings().model_name
    metadata, version, served, problem = _card_metadata(name)
    versions = [row for row in registry().index() if row["name"] == name]
    if metadata is None:
        return _page("model.html", status=503, name=name, metadata=None, problem=problem, versions=versions)
    evaluation = metadata.evaluation
    confusion = evaluation.confusion_matrix if evaluation else []
    if confusion and (len(confusion) != len(metadata.labels) or any(len(r) != len(metadata.labels) for r in confusion)):
        confusion = []  # a matrix that does not match the labels cannot be labelled: show the image only
    return _page(
        "model.html", name=name, metadata=metadata, version=version, served=served, problem=problem,
        evaluation=evaluation, confusion=confusion, training=_training_rows(metadata.training),
        images=_report_images(name, version), versions=versions,
    )


@bp.get("/model/report/<version>/<path:filename>")
def report_file(version: str, filename: str):
    """A file of one version's report/ folder, for the default model only."""
    name = settings().model_name
    if not _VERSION.match(version) or int(version) not in registry().versions(name):
        abort(404, description=f"no version {version!r} of {name!r}")
    folder = modelrepo.version_dir(settings().model_repository, name, int(version)) / REPORT_DIR
    # send_from_directory refuses paths that leave the folder, and answers 404 for missing files.
    return send_from_directory(folder, filename, max_age=3600)


# -- API docs -------------------------------------------------------------------------------------


@bp.get("/openapi.yaml")
def openapi_spec():
    return send_file(SPEC, mimetype="application/yaml", max_age=300)


@bp.get("/docs")
def docs():
    if _SWAGGER_UI is None:
        return _page("docs_plain.html", spec=SPEC.read_text(encoding="utf-8"))
    return _page("docs.html", csp=False)


@bp.get("/docs/assets/<path:filename>")
def docs_asset(filename: str):
    if _SWAGGER_UI is None:
        abort(404)
    return send_from_directory(str(_SWAGGER_UI), filename, max_age=86400)
