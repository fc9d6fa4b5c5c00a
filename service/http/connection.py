"""One client connection's state, shared by the event loop and (for one request at a time) a thread.

The event loop reads the socket and owns the parser until a complete request goes to a thread;
the thread writes its response straight to the socket (plain TCP, non-blocking) and may read the
client's next request itself for a moment, so that a closed-loop client's round trip needs no
hop through the loop. `lock` guards what the two hand
over: `queue`, `busy`, `out` and `closing`. While `busy`, the thread also owns the socket's reads
and the parser (plain TCP; the loop keeps a TLS socket).
"""
from __future__ import annotations

import selectors
import socket
import ssl
import threading
import time
from collections import deque

from service.http.parser import Refusal, Request, RequestReader
from service.http.wsgi import Site


class Connection:
    def __init__(self, sock: socket.socket, client, site: Site, reader: RequestReader, tls: bool):
        self.sock, self.client, self.site, self.reader, self.tls = sock, client, site, reader, tls
        self.lock = threading.Lock()
        self.queue: deque[Request | Refusal] = deque()  # parsed, not yet answered, in order
        self.queued_bytes = 0  # of the bodies in `queue`
        self.busy = False  # a thread is answering one of its requests
        self.out = bytearray()  # response bytes the socket has not taken yet
        self.closing = False  # close (lingering) once `out` is written
        self.eof = False  # the client closed its side (or the socket failed)
        self.continued = False  # "100 Continue" sent for the request being read
        self.handshaking, self.handshake_wants = tls, selectors.EVENT_READ
        self.lingering, self.dropped = False, 0
        self.closed = False
        self.mask = 0  # the events registered with the selector (0: not registered)
        self.deadline = 0.0  # for handshakes and lingering closes
        self.idle_since = self.written_at = time.monotonic()

    @property
    def idle(self) -> bool:
        """Nothing under way: no request being read, queued, answered or written."""
        return not (self.busy or self.queue or self.out or self.handshaking or self.reader.started is not None)

    # -- the queue of parsed requests (callers hold `lock`) -------------------------------------------
    def push(self, items: list[Request | Refusal]) -> None:
        self.queue.extend(items)
        self.queued_bytes += sum(len(item.body) for item in items if isinstance(item, Request))

    def pop(self) -> Request | Refusal:
        item = self.queue.popleft()
        if isinstance(item, Request):
            self.queued_bytes -= len(item.body)
        return item

    def unpop(self, item: Request) -> None:
        self.queue.appendleft(item)
        self.queued_bytes += len(item.body)

    def drop_queue(self) -> int:
        """Forget the requests not yet answered (the connection is closing); their body bytes."""
        dropped, self.queued_bytes = self.queued_bytes, 0
        self.queue.clear()
        return dropped

    # -- the socket ---------------------------------------------------------------------------------
    def receive(self, size: int) -> bytes | None:
        """What the socket holds now: None if nothing, b"" once the client is gone."""
        try:
            return self.sock.recv(size)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except OSError:  # reset, or a TLS error: the connection is over either way
            return b""

    def pending_tls(self) -> bool:
        """TLS holds decrypted bytes already read from the kernel (select() will not report them)."""
        return self.tls and self.sock.pending() > 0

    def send_now(self, data: bytes) -> int:
        """From a thread: send what the socket takes without blocking (nothing over TLS: the loop owns it)."""
        if self.tls:
            return 0
        try:
            return self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            self.eof = True  # the client is gone: the loop closes the connection
            return len(data)

    def add_out(self, data: bytes) -> None:
        """Queue response bytes for the loop to write; the client's time to read them starts now."""
        if not self.out:
            self.written_at = time.monotonic()
        self.out += data

    def send_pending(self) -> int | None:
        """From the loop: send what `out` holds as far as the socket takes it; None if the client is gone."""
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return 0
        except OSError:
            return None
        if sent:
            del self.out[:sent]
            self.written_at = time.monotonic()
        return sent

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
