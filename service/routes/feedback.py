"""POST /v1/feedback: the true label of a captured image, from the token's holder or (opt-in) the public."""
from __future__ import annotations

import hmac
import time

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

import store
from service.capture import Capturer
from service.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    NotReady,
    ServingError,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
)
from service.feedback import FeedbackRequest, RateLimit
from service.protocol import parse
from service.quality import feedback as count_feedback
from service.routes import body, capturer, models, settings

bp = Blueprint("feedback", __name__, url_prefix="/v1")


def _source() -> str:
    """'token' or 'public', or the 401/403 that says why the caller may not label."""
    token, public = settings().feedback_token, settings().feedback_public
    sent = request.headers.get("Authorization")
    if token and sent is not None:
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            raise Unauthorized("wrong bearer token (FEEDBACK_TOKEN)")
        return "token"
    if public:
        return "public"
    if not token:
        raise Forbidden("feedback is disabled: set FEEDBACK_TOKEN (or FEEDBACK_PUBLIC=1) to enable it")
    raise Unauthorized("missing bearer token (FEEDBACK_TOKEN)")


def _class_id(sent: FeedbackRequest, capture: store.Capture) -> tuple[int, str | None]:
    """The true class as (id, label) in the capturing model's classes, or 400."""
    try:
        labels = models().get(capture.model).labels
    except ServingError:  # the model is no longer served: only a class id can be checked
        labels = None
    classes = len(capture.probabilities)
    if sent.class_id is not None:
        if sent.class_id >= classes:
            raise BadRequest(f"class_id: {capture.model} has classes 0 to {classes - 1}, got {sent.class_id}")
        return sent.class_id, labels[sent.class_id] if labels else None
    if labels is None:
        raise BadRequest(f"{capture.model} is no longer served: send class_id (0 to {classes - 1}) instead of label")
    if sent.label not in labels:
        raise BadRequest(f"label: {capture.model} has no class {sent.label[:60]!r}; its labels are {labels}")
    return labels.index(sent.label), sent.label


@bp.post("/feedback")
def feedback():
    source = _source()
    if source == "public" and not current_app.extensions["feedback_limit"].allow(request.remote_addr or ""):
        raise TooManyRequests(f"more than {settings().feedback_public_per_minute} public labels a minute from this client")
    capture_queue: Capturer | None = capturer()
    if capture_queue is None:
        raise Conflict("capture is off here (CAPTURE_ENABLED=0): no image is kept, so none can be labelled")
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(f"send the body as application/json, got {request.mimetype or 'no content type'!r}")
    sent = parse(FeedbackRequest, body())
    now = time.time()
    not_before = now - capture_queue.max_age_seconds()
    try:
        capture_queue.ensure_schema()
        capture = store.find(capture_queue.engine, sent.id, sent.index, not_before)
        if capture is None:
            raise NotFound(f"no image {sent.index} of request {sent.id[:60]!r}: unknown, not sampled, not yet written "
                           f"(retry in a second) or older than CAPTURE_MAX_AGE_HOURS")
        class_id, label = _class_id(sent, capture)
        outcome = store.label(capture_queue.engine, sent.id, sent.index, class_id, source, now, not_before)
    except SQLAlchemyError:
        raise NotReady("the capture store is not answering; try again later") from None
    if outcome is store.Outcome.UNKNOWN:  # pruned between the read and the write
        raise NotFound(f"no image {sent.index} of request {sent.id[:60]!r}: older than the retention")
    if outcome is store.Outcome.KEPT:
        raise Conflict("this image was labelled with the token; a public label does not replace it")
    count_feedback(capture.model, capture.version, class_id == capture.predicted)
    return jsonify(id=sent.id, index=sent.index, class_id=class_id, label=label, source=source,
                   correct=class_id == capture.predicted, model_name=capture.model, model_version=str(capture.version))


def init_app(app) -> None:
    """The per-worker limit on public labels."""
    app.extensions["feedback_limit"] = RateLimit(app.extensions["settings"].feedback_public_per_minute)
