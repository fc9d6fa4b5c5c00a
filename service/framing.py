"""Where one HTTP/1.1 request ends, found without parsing more than its framing.

The worker's event loop collects each request here, from bytes the socket already holds, and
hands it to a request thread only once it is complete: a client that sends its head one byte
a minute never holds a thread. gunicorn's own parser still parses the request in the thread;
anything this module finds odd is handed over at once, for that parser to refuse.
"""
from __future__ import annotations

import time

CRLF, END_OF_HEAD = b"\r\n", b"\r\n\r\n"


class Frame:
    """The bytes of one request (and whatever the client pipelined after it)."""

    def __init__(self, max_head: int, max_body: int):
        self._max_head, self._max_body = max_head, max_body
        self.data = bytearray()
        self.started: float | None = None  # when its first byte arrived
        self.expects_continue = False  # the client waits for "100 Continue" before its body
        self.continued = False  # and the event loop has told it to go on
        self.done = False  # what the last feed() said
        self.oversized = False  # its body is over the limit: answered 413 before the body is read
        self._head_end: int | None = None
        self._end: int | None = None  # known once the length is (Content-Length) or found (chunked)
        self._chunked = False
        self._chunk_at = 0  # next chunk-size line of a chunked body
        self._chunk_bytes = 0

    def feed(self, data: bytes) -> bool:
        """Add received bytes; True once the request is complete, or must be handed over as it is."""
        self.done = self._feed(data)
        return self.done

    def _feed(self, data: bytes) -> bool:
        if self.started is None:
            self.started = time.monotonic()
        self.data += data
        if self._head_end is None:
            found = self.data.find(END_OF_HEAD, max(0, len(self.data) - len(data) - 3))
            if found < 0:
                return len(self.data) > self._max_head  # too long: gunicorn's parser says so
            self._head_end = found + len(END_OF_HEAD)
            if not self._read_head(bytes(self.data[:found])):
                return True
        if self._end is not None:
            return len(self.data) >= self._end
        return self._scan_chunks()

    def take(self) -> bytes:
        """The bytes collected so far; the frame starts empty again."""
        data, self.data = bytes(self.data), bytearray()
        return data

    def _read_head(self, head: bytes) -> bool:
        """Learn the body's framing; False when the request goes to the thread without its body."""
        lengths, chunked = [], False
        for line in head.split(CRLF)[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                chunked = chunked or b"chunked" in value
            elif name == b"expect":
                self.expects_continue = value == b"100-continue"
        if (chunked and lengths) or len(lengths) > 1:
            return False  # both, or several lengths: a smuggling attempt the parser refuses
        if chunked:
            self._chunked, self._chunk_at = True, self._head_end
            return True
        if not lengths:
            self._end = self._head_end
            return True
        if not lengths[0].isdigit():
            return False
        if int(lengths[0]) > self._max_body:
            self.oversized = True  # said up front: no need to wait for the body
            return False
        self._end = self._head_end + int(lengths[0])
        return True

    def _scan_chunks(self) -> bool:
        while True:
            line_end = self.data.find(CRLF, self._chunk_at)
            if line_end < 0:
                return False
            size_text = bytes(self.data[self._chunk_at:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                return True  # malformed: the parser answers 400
            if size == 0:  # the last chunk, then optional trailers, then an empty line
                if self.data[line_end:line_end + 4] == END_OF_HEAD:
                    self._end = line_end + 4
                    return True
                trailers_end = self.data.find(END_OF_HEAD, line_end)
                if trailers_end < 0:
                    return len(self.data) - line_end > self._max_head
                self._end = trailers_end + 4
                return True
            self._chunk_bytes += size
            if self._chunk_bytes > self._max_body:
                self.oversized = True
                return True
            next_chunk = line_end + 2 + size + 2
            if len(self.data) < next_chunk:
                return False
            self._chunk_at = next_chunk
