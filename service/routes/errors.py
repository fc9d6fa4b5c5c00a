"""The one place that maps errors to HTTP: JSON for everything, stack traces to the log only."""
from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from service.errors import ServingError

log = logging.getLogger(__name__)


def _json(message: str, status: int, headers: dict | None = None) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def init_app(app: Flask) -> None:
    """JSON errors for everything; stack traces go to the log, never to the client."""

    @app.errorhandler(ServingError)
    def serving_error(exc: ServingError):
        retry = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return _json(str(exc), exc.status, retry)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # werkzeug raises these itself: unknown routes (404), methods (405, with its Allow
        # header), malformed forms (400).
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
