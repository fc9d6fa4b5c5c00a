"""Every failure a client can cause, one exception type each, and the one place that maps errors to HTTP.

The rule: client input gets a 4xx JSON error that says what was expected and what came. A 5xx
is always our bug: it is logged with its traceback, and the client gets a short JSON error.
"""
from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

log = logging.getLogger(__name__)


class ServingError(Exception):
    """Base of the errors we answer on purpose; `status` is the HTTP status, the message the JSON error."""

    status = 500


class BadRequest(ServingError):
    status = 400


class LoadFailed(ServingError):
    """An operator asked to load a version that cannot be served; nothing changed."""

    status = 400


class Unauthorized(ServingError):
    status = 401


class Forbidden(ServingError):
    status = 403


class ModelNotFound(ServingError):
    status = 404


class NotFound(ServingError):
    """An address that names nothing we keep (a feedback id unknown or past the retention)."""

    status = 404


class Conflict(ServingError):
    """The request cannot be carried out in this deployment as it stands (a read-only repository)."""

    status = 409


class PayloadTooLarge(ServingError):
    status = 413


class UnsupportedMediaType(ServingError):
    status = 415


class TooManyRequests(ServingError):
    """A client passed its rate limit (public feedback); it may try again later."""

    status = 429


class NotReady(ServingError):
    status = 503


def _json(message: str, status: int, headers: dict | None = None) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def init_app(app: Flask) -> None:
    """JSON errors for everything; stack traces go to the log, never to the client."""

    @app.errorhandler(ServingError)
    def serving_error(exc: ServingError):
        return _json(str(exc), exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # werkzeug raises these itself: unknown routes (404), methods (405, with its Allow
        # header), bodies over MAX_CONTENT_LENGTH (413), malformed forms (400).
        if isinstance(exc, RequestRedirect):
            # werkzeug would redirect a path it had to normalise (an encoded slash in a model
            # name, say) with an HTML page; no API path needs normalising, so it is not found.
            return _json("not found: the path does not name a model or endpoint", 404)
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return _json(exc.description or exc.name, exc.code or 500, headers)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return _json("internal server error", 500)
