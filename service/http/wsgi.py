"""A complete request → the WSGI app → one response, as the bytes that leave in one write (PEP 3333).

The body is already in memory (service/http/parser.py), so the app never waits on a client:
a chunked body reaches it decoded, with its length as CONTENT_LENGTH. The response is joined
into one buffer with its head: one send per response, where writing the head and the body
separately cost a fifth of a worker's time under single-image load (py-spy, last round).
"""
from __future__ import annotations

import io
import logging
import sys
import time
from email.utils import formatdate
from http import HTTPStatus

import orjson

from service import metrics
from service.http.parser import Refusal, Request

log = logging.getLogger(__name__)
SERVER = "fashion-serving"
# Responses that never have a body (RFC 9110 §6.4.1).
_BODYLESS = ("1", "204", "304")


class Site:
    """What every request of one listening socket shares: addresses and the URL scheme."""

    def __init__(self, server: tuple, scheme: str):
        host, port = (server[0], str(server[1])) if isinstance(server, tuple) else (str(server), "")
        self.base = {
            "wsgi.version": (1, 0), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
            "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.url_scheme": scheme,
            "SERVER_SOFTWARE": SERVER, "SCRIPT_NAME": "", "SERVER_NAME": host, "SERVER_PORT": port,
        }


def environ(request: Request, site: Site, client: tuple | str) -> dict:
    """The WSGI environ of a complete request."""
    env = dict(site.base)
    env.update({
        "REQUEST_METHOD": request.method, "SERVER_PROTOCOL": f"HTTP/{request.version}",
        "RAW_URI": request.url.decode("latin-1"), "PATH_INFO": request.path, "QUERY_STRING": request.query,
        "REMOTE_ADDR": client[0] if isinstance(client, tuple) else str(client),
        "REMOTE_PORT": str(client[1]) if isinstance(client, tuple) else "",
        "wsgi.input": io.BytesIO(request.body),
    })
    for name, value in request.headers:
        key = name.decode("latin-1").upper()
        if "_" in key:
            # X_Forwarded_For and X-Forwarded-For would both become HTTP_X_FORWARDED_FOR: a proxy
            # that checks one lets the other through. Dropped, as gunicorn's header_map does.
            continue
        key = key.replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            env[key] = value.decode("latin-1")
        elif key not in ("TRANSFER_ENCODING", "EXPECT"):  # both handled here already
            key = "HTTP_" + key
            text = value.decode("latin-1")
            env[key] = f"{env[key]},{text}" if key in env else text
    if request.body or "CONTENT_LENGTH" in env:
        env["CONTENT_LENGTH"] = str(len(request.body))
    return env


def respond(app, env: dict, request: Request, keep_alive: bool) -> tuple[bytes, bool]:
    """Run the app on one request: the response's bytes, and whether the connection stays open."""
    started: list = []
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
        if exc_info and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return chunks.append

    try:
        body_iter = app(env, start_response)
        try:
            chunks.extend(body_iter)
        finally:
            if hasattr(body_iter, "close"):
                body_iter.close()
        status, headers = started
        body = b"".join(chunks)
        # A header the app set that latin-1 cannot carry fails here: our bug, answered as one.
        response = head(status, headers, len(body), keep_alive, request.method == "HEAD")
    except Exception:
        # Flask answers its own errors; one that escapes it is our bug, answered as JSON.
        log.exception("unhandled error in the app: %s %s", request.method, env.get("RAW_URI"))
        metrics.REQUESTS.labels("other", metrics.UNKNOWN, "500").inc()
        return error(500, "internal server error", keep_alive=False), False
    return response + (b"" if request.method == "HEAD" else body), keep_alive


def head(status: str, headers: list[tuple[str, str]], length: int, keep_alive: bool, for_head: bool = False) -> bytes:
    """The status line and headers: the app's, then Content-Length, Date, Server, Connection."""
    lines = [f"HTTP/1.1 {status}\r\n"]
    has_length = has_date = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == "connection":
            continue  # hop-by-hop: ours to say
        has_length = has_length or lowered == "content-length"
        has_date = has_date or lowered == "date"  # werkzeug dates file responses itself
        lines.append(f"{name}: {value}\r\n")
    if not has_length and not status.startswith(_BODYLESS) and not for_head:
        lines.append(f"Content-Length: {length}\r\n")
    if not has_date:
        lines.append(f"Date: {_date()}\r\n")
    lines.append(f"Server: {SERVER}\r\n")
    lines.append("\r\n" if keep_alive else "Connection: close\r\n\r\n")
    return "".join(lines).encode("latin-1")


def error(status: int, message: str, keep_alive: bool = False) -> bytes:
    """A complete JSON error response, as every answer of the service is: {"error": message}."""
    body = orjson.dumps({"error": message})
    phrase = HTTPStatus(status).phrase
    return head(f"{status} {phrase}", [("Content-Type", "application/json")], len(body), keep_alive) + body


def refusal(refused: Refusal) -> bytes:
    """The answer to a request the HTTP layer refused; the connection closes after it."""
    return error(refused.status, refused.message)


_dates: tuple[int, str] = (0, "")


def _date() -> str:
    """The Date header's value, formatted once a second."""
    global _dates
    now = int(time.time())
    if _dates[0] != now:
        _dates = (now, formatdate(now, usegmt=True))
    return _dates[1]
