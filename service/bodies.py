"""Request bodies: one size limit, MAX_REQUEST_BYTES, whatever the transfer encoding.

werkzeug enforces the limit on a Content-Length before reading anything. A chunked body has no
length, and werkzeug's stream then stops quietly at the limit: a 9 MB upload was cut to 8 MiB
and answered as if whole. So a chunked body is read here first, up to one byte past the limit:
413 if it goes past, otherwise it is handed on with a Content-Length like any other body.
"""
from __future__ import annotations

import io

from flask import Flask, request

from service.errors import PayloadTooLarge

_CHUNK = 1 << 16


def init_app(app: Flask, limit: int) -> None:
    @app.before_request
    def buffer_chunked_body() -> None:
        environ = request.environ
        if environ.get("CONTENT_LENGTH") or "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return
        stream, parts, size = environ["wsgi.input"], [], 0
        while size <= limit and (part := stream.read(min(_CHUNK, limit + 1 - size))):
            parts.append(part)
            size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"request body over {limit:,} bytes (MAX_REQUEST_BYTES)")
        environ["wsgi.input"] = io.BytesIO(b"".join(parts))
        environ["CONTENT_LENGTH"] = str(size)
