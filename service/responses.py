"""How responses leave a worker: in one write, and, for the event loop's own refusals, canned."""
from __future__ import annotations

import orjson
from gunicorn.http import wsgi


class CoalescingResponse(wsgi.Response):
    """A gunicorn response whose head leaves with the first body bytes, in one sendall.

    gunicorn writes the status line and headers, then the body: two syscalls and two TCP
    segments per response. Under single-image load the first write alone was a fifth of a
    worker's time (py-spy), since the loopback send does the receiver's work too.
    """

    _head = b""

    def send_headers(self) -> None:
        if self.headers_sent:
            return
        lines = self.default_headers() + [f"{name}: {value}\r\n" for name, value in self.headers]
        self._head = ("".join(lines) + "\r\n").encode("latin-1")
        self.headers_sent = True

    def _emit_body(self, data: bytes) -> None:
        head, self._head = self._head, b""
        framed = b"%X\r\n%s\r\n" % (len(data), data) if self.chunked else data
        self.sock.sendall(head + framed)

    def can_sendfile(self) -> bool:
        return False  # files go through write(), so their head is coalesced too (ours are small)

    def close(self) -> None:
        self.send_headers()
        last = b"0\r\n\r\n" if self.chunked else b""
        if self._head or last:
            head, self._head = self._head, b""
            self.sock.sendall(head + last)


def canned(status: str, message: str) -> bytes:
    """A complete JSON error response sent by the event loop itself; the connection then closes."""
    body = orjson.dumps({"error": message})
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode("latin-1") + body
