"""Open Inference Protocol v2 (KServe / Triton REST): health, metadata, infer."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from service.errors import NotReady, UnsupportedMediaType
from service.metrics import IMAGES
from service.quality import observe
from service.routes import body, capturer, models, new_request_id, settings
from service.tensors import HEADER_LENGTH, encode_response, input_tensor, parse_request, requested_outputs

bp = Blueprint("v2", __name__, url_prefix="/v2")
VERSIONED = ("", "/versions/<version>")
EXTENSIONS = ["model_repository", "classification", "binary_tensor_data"]
# tritonclient sends binary requests as octet-stream and JSON ones sometimes with no type at all;
# `curl -d` labels JSON as a form. The body is parsed as JSON whatever the label says.
BODY_TYPES = {"application/json", "application/octet-stream", "application/x-www-form-urlencoded", ""}


@bp.get("/health/live")
def live():
    return jsonify(live=True)


@bp.get("/health/ready")
def ready():
    if not models().ready():
        raise NotReady(f"model {settings().model_name!r} is not loaded")
    return jsonify(ready=True)


@bp.get("")
def server_metadata():
    return jsonify(name="fashion-serving", version="1.0.0", extensions=EXTENSIONS)


def _routes(suffix: str, **options):
    def decorate(view):
        for versioned in VERSIONED:
            bp.add_url_rule(f"/models/<name>{versioned}{suffix}", view_func=view, **options)
        return view

    return decorate


def _tensor(spec) -> dict:
    return {"name": spec.name, "datatype": spec.datatype, "shape": spec.shape}


@_routes("", methods=["GET"])
def model_metadata(name: str, version: str | None = None):
    served = models().get(name, version)
    return jsonify(
        name=name,
        versions=[str(v) for v in models().versions(name)],
        platform=served.metadata.platform,
        inputs=[_tensor(served.input)],
        outputs=[_tensor(served.output)],
        parameters={"labels": served.labels, "version": str(served.version), "provider": served.provider},
    )


@_routes("/ready", methods=["GET"])
def model_ready(name: str, version: str | None = None):
    models().get(name, version)
    return jsonify(name=name, ready=True)


@_routes("/infer", methods=["POST"])
def infer(name: str, version: str | None = None):
    served = models().get(name, version)
    if request.mimetype not in BODY_TYPES:
        raise UnsupportedMediaType(f"unsupported content type {request.mimetype!r}; send application/json "
                                   "(or application/octet-stream with Inference-Header-Content-Length)")
    with served.expecting():
        parsed, blobs = parse_request(body(), request.headers.get(HEADER_LENGTH))
        batch = input_tensor(parsed, blobs, served.input, settings().max_batch_images)
        outputs = requested_outputs(parsed, served.output, served.labels)
        probabilities = served.infer(batch)
    # The request's id is echoed; one is made when it had none, so every answer can get feedback.
    request_id = parsed.id if parsed.id else new_request_id()
    head = {"id": request_id, "model_name": name, "model_version": str(served.version)}
    payload, json_length = encode_response(head, outputs, probabilities, served.labels)
    IMAGES.labels(served.name, str(served.version)).inc(len(batch))
    observe(served, batch, probabilities)
    if (capture := capturer()) is not None:
        capture.submit(request_id, "v2", served.name, served.version, batch, probabilities)
    # A header carries latin-1 only: a client's id beyond ASCII stays in the body alone.
    headers = {"X-Request-ID": request_id} if request_id.isascii() else {}
    if json_length is None:
        return Response(payload, mimetype="application/json", headers=headers)
    return Response(payload, mimetype="application/octet-stream", headers=headers | {HEADER_LENGTH: str(json_length)})
