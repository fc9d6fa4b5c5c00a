"""Bytes → complete requests, through llhttp (httptools): the only HTTP parser in the service.

llhttp is Node.js's parser, strict by default and fuzzed continuously upstream: it refuses every
framing trick the hand-written framer of the last round let through (signed, prefixed or
underscored chunk sizes, a space before a header's colon, Content-Length with
Transfer-Encoding, `xchunked`, obs-fold, bare LF). This module adds only what llhttp leaves to
its caller, the limits on what one request may hold, each checked as the bytes arrive:

- the URL (414), one header field and the number of fields (431), the whole head (431);
- the body: a declared Content-Length over the limit is refused before any of it is read, a
  chunked body as soon as its decoded size passes the limit (413).

A refused or malformed request ends the connection: nothing after it can be trusted to be HTTP.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

import httptools


# Received bytes a chunked request may take per byte of body it is allowed: the framing of
# one-byte chunks ("1\r\nX\r\n") is six bytes a byte, with room for short extensions.
FRAMING_FACTOR = 8
# Bytes handed to llhttp at a time. The head and framing limits are checked between slices, since
# llhttp does not say where in a buffer a request began: they hold to within one slice.
FEED_SLICE = 16 * 1024


class Limits(NamedTuple):
    """What one request may hold (gunicorn's limit_request_* settings and MAX_REQUEST_BYTES)."""

    url: int
    fields: int
    field: int
    head: int
    body: int


@dataclass
class Request:
    """One complete request, body included."""

    method: str
    url: bytes
    path: str  # percent-decoded, as WSGI's PATH_INFO (latin-1)
    query: str
    version: str  # "1.0" or "1.1"
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool


@dataclass(frozen=True)
class Refusal:
    """A request refused before it reached the app: the status and what was wrong."""

    status: int
    message: str


class _Refuse(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.refusal = Refusal(status, message)


@dataclass
class _Message:
    url: bytearray = field(default_factory=bytearray)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    head_bytes: int = 0
    raw_bytes: int = 0  # as received, framing included
    first_slice: int = 0
    body: list[bytes] = field(default_factory=list)
    body_bytes: int = 0
    headers_done: bool = False
    path: str = ""
    query: str = ""


class RequestReader:
    """One connection's parser: feed() it bytes, it returns the requests they complete."""

    def __init__(self, limits: Limits):
        self._limits = limits
        self._parser = httptools.HttpRequestParser(self)
        self._message: _Message | None = None
        self._complete: list[Request | Refusal] = []
        self._slice = 0  # feed_data() calls so far: a message's bytes count from the slice after its first
        self.started: float | None = None  # when the first byte of the incomplete request came
        self.expects_continue = False  # the incomplete request waits for "100 Continue"
        self.closed = False  # refused, malformed or upgraded: nothing more is read

    @property
    def buffered(self) -> int:
        """Bytes of the incomplete request held in memory."""
        message = self._message
        return 0 if message is None else message.head_bytes + message.body_bytes

    def feed(self, data: bytes) -> list[Request | Refusal]:
        """The requests (or the one refusal) that `data` completes, in order."""
        if self.closed:
            return []
        view = memoryview(data)
        try:
            for start in range(0, len(view), FEED_SLICE):
                self._slice += 1
                piece = view[start:start + FEED_SLICE]
                self._parser.feed_data(piece)
                self._count(len(piece))
        except httptools.HttpParserUpgrade:
            # Upgrade or CONNECT: the request itself is complete, what follows is not HTTP/1.1.
            # The app answers it (no route upgrades) and the connection closes after.
            self._close()
            for request in self._complete:
                if isinstance(request, Request):
                    request.keep_alive = False
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Refuse):
                raise
            self._refuse(exc.__context__.refusal)
        except _Refuse as exc:
            self._refuse(exc.refusal)
        except httptools.HttpParserError as exc:
            self._refuse(_malformed(exc, self._parser))
        done, self._complete = self._complete, []
        return done

    def _count(self, received: int) -> None:
        """Hold the incomplete request to the head and framing limits, counting what it received."""
        message = self._message
        if message is None or message.first_slice == self._slice:
            return  # begun in this slice: counted from the next (an undercount of at most one slice)
        message.raw_bytes += received
        if not message.headers_done:
            message.head_bytes += received
            if message.head_bytes > self._limits.head:
                raise _Refuse(431, f"request head over {self._limits.head:,} bytes")
        elif message.raw_bytes > self._limits.head + FRAMING_FACTOR * self._limits.body:
            # Chunk extensions and sizes are framing, not body: an endless size line or extension
            # would otherwise stream through the parser until the read timeout.
            raise _Refuse(413, f"request over {self._limits.head + FRAMING_FACTOR * self._limits.body:,} bytes "
                               f"with its chunked framing (MAX_REQUEST_BYTES is {self._limits.body:,})")

    def discard(self) -> None:
        """The client is gone: its incomplete request will never complete."""
        self._close()

    def refuse(self, refusal: Refusal) -> list[Request | Refusal]:
        """End the connection's reading with a refusal of our own (a request too slow to arrive)."""
        if self.closed:
            return []
        self._refuse(refusal)
        done, self._complete = self._complete, []
        return done

    def _refuse(self, refusal: Refusal) -> None:
        self._complete.append(refusal)
        self._close()

    def _close(self) -> None:
        self.closed, self.started, self._message, self.expects_continue = True, None, None, False

    # -- llhttp's callbacks -------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._message = _Message(first_slice=self._slice)
        self.started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        message = self._message
        message.url += url  # llhttp may hand the URL over in pieces
        if len(message.url) > self._limits.url:
            raise _Refuse(414, f"URL over {self._limits.url:,} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._message.headers
        headers.append((name, value))
        if len(headers) > self._limits.fields:
            raise _Refuse(431, f"more than {self._limits.fields} header fields")
        if len(name) + len(value) > self._limits.field:
            raise _Refuse(431, f"header field {name[:40].decode('latin-1')!r} over {self._limits.field:,} bytes")

    def on_headers_complete(self) -> None:
        message = self._message
        message.headers_done = True
        message.path, message.query = _split_url(bytes(message.url))
        for name, value in message.headers:
            lowered = name.lower()
            # llhttp has checked that a Content-Length is digits, and is the only one.
            if lowered == b"content-length":
                self._check_body(int(value))
            if lowered == b"expect":
                self.expects_continue = value.lower() == b"100-continue"

    def on_body(self, body: bytes) -> None:
        message = self._message
        message.body_bytes += len(body)
        self._check_body(message.body_bytes)  # chunked: the size is known only as it comes
        message.body.append(body)

    def _check_body(self, size: int) -> None:
        """The one check of MAX_REQUEST_BYTES (413): the app behind the front door never sees more."""
        if size > self._limits.body:
            raise _Refuse(413, f"request body over {self._limits.body:,} bytes (MAX_REQUEST_BYTES): {size:,} announced or received")

    def on_message_complete(self) -> None:
        message, parser = self._message, self._parser
        self._complete.append(Request(
            method=parser.get_method().decode("ascii"), url=bytes(message.url), path=message.path, query=message.query,
            version=parser.get_http_version(), headers=message.headers, body=b"".join(message.body),
            keep_alive=parser.should_keep_alive(),
        ))
        self._message, self.started, self.expects_continue = None, None, False


def _split_url(url: bytes) -> tuple[str, str]:
    """PATH_INFO and QUERY_STRING of a request target (origin form, absolute form or "*")."""
    if url == b"*":
        return "*", ""
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        raise _Refuse(400, f"malformed URL {url[:80].decode('latin-1')!r}") from None
    return unquote_to_bytes(parsed.path or b"/").decode("latin-1"), (parsed.query or b"").decode("latin-1")


def _malformed(exc: httptools.HttpParserError, parser: httptools.HttpRequestParser) -> Refusal:
    """llhttp's reason as a client error: 505 for an HTTP version we do not speak, else 400."""
    reason = str(exc) or type(exc).__name__
    if reason == "Pause on PRI/Upgrade":  # the HTTP/2 connection preface
        return Refusal(505, "HTTP/2 is not served here: send HTTP/1.1 (or put an HTTP/2 proxy in front)")
    if reason == "Invalid HTTP version":
        return Refusal(505, f"HTTP/{parser.get_http_version()} is not served here: send HTTP/1.1 or HTTP/1.0")
    if isinstance(exc, httptools.HttpParserInvalidMethodError):
        reason += " (TLS sent to a plain-HTTP port looks like this)"
    return Refusal(400, f"malformed HTTP/1.1 request: {reason}")
