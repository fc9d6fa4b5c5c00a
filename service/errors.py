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

    def __init_subclass__(cls, status: int | None = None, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:  # a subclass of a subclass keeps its parent's
            cls.status = status


class BadRequest(ServingError, status=400):
    """The request is malformed, or names a value outside what is documented."""


class LoadFailed(ServingError, status=400):
    """An operator asked to load a version that cannot be served; nothing changed."""


class Unauthorized(ServingError, status=401):
    """An admin or feedback call without the right token."""


class Forbidden(ServingError, status=403):
    """An API switched off in this deployment (no ADMIN_TOKEN, no FEEDBACK_TOKEN)."""


class ModelNotFound(ServingError, status=404):
    """No model, or no version of it, by that name."""


class NotFound(ServingError, status=404):
    """An address that names nothing we keep (a feedback id unknown or past the retention)."""


class Conflict(ServingError, status=409):
    """The request cannot be carried out in this deployment as it stands (a read-only repository)."""


class PayloadTooLarge(ServingError, status=413):
    """Over a limit on what a request may hold: images, pixels, decoding CPU or memory."""


class UnsupportedMediaType(ServingError, status=415):
    """A content type the endpoint does not read."""


class TooManyRequests(ServingError, status=429):
    """A client passed its rate limit (public feedback); it may try again later."""


class NotReady(ServingError, status=503):
    """The model is not loaded (yet), or every decoder is busy: try again."""
