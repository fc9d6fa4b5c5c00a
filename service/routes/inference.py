"""Open Inference Protocol v2 (KServe / Triton REST): health, metadata, infer."""
from __future__ import annotations

import orjson
from flask import Blueprint, Response, jsonify, request

from service.errors import NotReady, UnsupportedMediaType
from service.metrics import IMAGES
from service.routes import registry, settings
from service.tensors import HEADER_LENGTH, encode_outputs, input_tensor, parse_body

bp = Blueprint("v2", __name__, url_prefix="/v2")
VERSIONED = ("", "/versions/<version>")
EXTENSIONS = ["model_repository", "classification", "binary_tensor_data"]
BODY_TYPES = {"application/json", "application/octet-stream", "application/x-www-form-urlencoded", ""}


@bp.get("/health/live")
def live():
    return jsonify(live=True)


@bp.get("/health/ready")
def ready():
    if not registry().ready():
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


@_routes("", methods=["GET"])
def model_metadata(name: str, version: str | None = None):
    served = registry().get(name, version)
    runtime = served.runtime
    return jsonify(
        name=name,
        versions=[str(v) for v in registry().versions(name)],
        platform=runtime.metadata.platform,
        inputs=[spec.model_dump(exclude={"range"}) for spec in runtime.inputs],
        outputs=[spec.model_dump(exclude={"range"}) for spec in runtime.outputs],
        parameters={"labels": runtime.metadata.labels, "version": str(served.version), "provider": runtime.provider},
    )


@_routes("/ready", methods=["GET"])
def model_ready(name: str, version: str | None = None):
    registry().get(name, version)
    return jsonify(name=name, ready=True)


@_routes("/infer", methods=["POST"])
def infer(name: str, version: str | None = None):
    served = registry().get(name, version)
    if request.mimetype not in BODY_TYPES:
        raise UnsupportedMediaType(f"unsupported content type {request.mimetype!r}; send application/json")
    runtime = served.runtime
    with served.batcher.expecting():
        parsed = parse_body(request.get_data(cache=False), request.headers.get(HEADER_LENGTH))
        batch = input_tensor(parsed, runtime.inputs[0], settings().max_batch_images)
        probabilities = served.infer(batch)
    outputs, blob = encode_outputs(parsed, runtime.outputs[0].name, probabilities, runtime.metadata.labels)
    IMAGES.labels(name, str(served.version)).inc(len(batch))
    body = {"model_name": name, "model_version": str(served.version), "outputs": outputs}
    if "id" in parsed.header:
        body["id"] = parsed.header["id"]
    head = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blob:
        return Response(head, mimetype="application/json")
    return Response(head + blob, mimetype="application/octet-stream", headers={HEADER_LENGTH: str(len(head))})
