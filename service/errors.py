"""Every failure a client can cause, as one exception type each, mapped to HTTP in one place."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ServingError(Exception):
    """Base: `status` is the HTTP status, the message goes to the client as {"error": ...}."""

    status = 500


class BadRequest(ServingError):
    status = 400


class ModelNotFound(ServingError):
    status = 404


class Unauthorized(ServingError):
    status = 401


class Forbidden(ServingError):
    status = 403


class PayloadTooLarge(ServingError):
    status = 413


class UnsupportedMediaType(ServingError):
    status = 415


class NotReady(ServingError):
    status = 503


def init_app(app: Flask) -> None:
    """JSON errors for everything; stack traces go to the log, never to the client."""

    @app.errorhandler(ServingError)
    def serving_error(exc: ServingError):
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # werkzeug raises these itself: 404 routes, 405 methods, 413 bodies over MAX_CONTENT_LENGTH.
        return jsonify(error=exc.description or exc.name), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return jsonify(error="internal server error"), 500
