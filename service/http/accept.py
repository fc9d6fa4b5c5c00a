"""Taking connections: accept without blocking, make room when full, and open each socket.

Past worker_connections, the longest-idle connection is closed for the new one: a client that
opens sockets and sends nothing cannot lock others out. When the process runs out of file
descriptors (EMFILE, ENFILE), an idle connection is closed to make room; only when none is idle
does accepting pause, until the event loop's next housekeeping. Each socket is made
non-blocking, with Nagle off, and wrapped for TLS before its first byte is read: the event loop
runs the handshake, so a ClientHello is never read as HTTP.
"""
from __future__ import annotations

import errno
import logging
import selectors
import socket
import ssl
import time
from collections.abc import Callable

from service.http import wsgi
from service.http.connection import Connection
from service.http.parser import Limits, RequestReader

log = logging.getLogger(__name__)
# Connections accepted per readiness event: enough to empty a burst's backlog, few enough that
# the connections already open are read again soon.
ACCEPT_BURST = 64
LISTENER = object()  # the selector's data for a listening socket


class Acceptor:
    def __init__(self, listeners: list, selector: selectors.BaseSelector, conns: dict[int, Connection],
                 close: Callable[[Connection], None], tls: ssl.SSLContext | None, limits: Limits,
                 handshake_seconds: float, max_connections: int):
        self.listeners, self._selector, self._conns, self._close = listeners, selector, conns, close
        self._tls, self._limits, self._handshake_seconds = tls, limits, handshake_seconds
        self._max_connections = max_connections
        self._sites: dict = {}  # listener → what its requests' environs share
        self.accepting = False

    def set_accepting(self, enabled: bool) -> None:
        if enabled != self.accepting:
            self.accepting = enabled
            for listener in self.listeners:
                (self._selector.register(listener, selectors.EVENT_READ, LISTENER) if enabled
                 else self._selector.unregister(listener))

    def accept(self, listener, burst: int = ACCEPT_BURST) -> None:
        for _ in range(burst):
            try:
                sock, client = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue
                if exc.errno in (errno.EMFILE, errno.ENFILE) and self._evict_idle():
                    continue
                log.warning("accept failed (%s): not accepting until the next housekeeping", exc)
                self.set_accepting(False)
                return
            if len(self._conns) >= self._max_connections:
                self._evict_idle()
            self._open(sock, client, listener)

    def drain(self) -> None:
        """Stop: accept what the kernel's backlog holds (each was a client's connect()), then no more."""
        for listener in self.listeners:
            self.accept(listener, burst=1 << 30)
        self.set_accepting(False)
        for listener in self.listeners:
            listener.close()

    def _evict_idle(self) -> bool:
        """Close the longest-idle connection (none with a request under way); False if there is none."""
        for conn in self._conns.values():  # in order of acceptance
            if conn.idle:
                self._close(conn)
                return True
        return False

    def _open(self, sock: socket.socket, client, listener) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        if (site := self._sites.get(listener)) is None:
            site = self._sites[listener] = wsgi.Site(listener.getsockname(), "https" if self._tls else "http")
        conn = Connection(sock, client, site, RequestReader(self._limits), tls=self._tls is not None)
        conn.deadline = time.monotonic() + self._handshake_seconds  # for the TLS handshake
        self._conns[sock.fileno()] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn)
        conn.mask = selectors.EVENT_READ
