"""Every failure a client can cause, one exception type each: plain types, no Flask.

The rule: client input gets a 4xx JSON error that says what was expected and what came. A 5xx
is always our bug: it is logged with its traceback, and the client gets a short JSON error.
The one place that maps these to HTTP responses is service/routes/errors.py.
"""
from __future__ import annotations


class ServingError(Exception):
    """Base of the errors we answer on purpose; `status` is the HTTP status, the message the JSON error."""

    status = 500
    retry_after: int | None = None  # seconds, sent as Retry-After when set


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

