"""The request threads: they take complete requests, run the app, and never wait on a client for long.

A thread answers a request, sends what the socket takes at once (non-blocking), and answers the
connection's next request itself when it is already parsed or arrives within LINGER_SECONDS.
Anything else, a response the socket did not take whole, a connection to close, a partial
request, goes back to the event loop through `hand_back`, which reads the socket again.
"""
from __future__ import annotations

import logging
import queue
import select
import threading
import time
from collections.abc import Callable

from service.http.connection import Connection
from service.http.parser import Request

log = logging.getLogger(__name__)
# After answering a kept-alive request with nothing else queued, a thread waits this long for
# the client's next request and answers it itself: a closed-loop client sends it within a
# fraction of a millisecond, and the trip through the event loop (a hand-back, an epoll
# registration and a hand-off to a thread per request) cost 7% of throughput at c=8 (v2 JSON,
# 2-core EPYC). While a thread holds a connection, the loop does not read it.
LINGER_SECONDS = 0.002
RECEIVE_BYTES = 256 * 1024
Answer = Callable[[Connection, Request], tuple[bytes, bool]]


class RequestThreads:
    def __init__(self, count: int, answer: Answer, hand_back: Callable[[Connection], None],
                 feed: Callable[[Connection, bytes], None]):
        self._count, self._answer, self._hand_back, self._feed = count, answer, hand_back, feed
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()

    def start(self) -> None:
        for i in range(self._count):
            threading.Thread(target=self._work, name=f"request-{i}", daemon=True).start()

    def stop(self) -> None:
        for _ in range(self._count):
            self._jobs.put(None)

    def submit(self, conn: Connection, request: Request) -> None:
        """Answer `request` of `conn` (which the caller marked busy) in a thread."""
        self._jobs.put((conn, request))

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            conn, request = job
            try:
                self._serve(conn, request)
            except Exception:  # our bug: the connection closes, the thread lives on
                log.exception("request thread failed")
                with conn.lock:
                    conn.busy, conn.closing = False, True
                self._hand_back(conn)

    def _serve(self, conn: Connection, request: Request | None) -> None:
        """Answer a request, then the connection's next ones while this thread may: those already
        parsed, and those the client sends within LINGER_SECONDS."""
        while request is not None:
            data, keep = self._answer(conn, request)
            sent = conn.send_now(data)
            with conn.lock:
                if sent < len(data):
                    conn.add_out(data[sent:])
                conn.closing = conn.closing or not keep
                conn.idle_since = time.monotonic()
            request = self._next(conn)
        self._hand_back(conn)

    def _next(self, conn: Connection) -> Request | None:
        """The connection's next request, if this thread is to answer it; None (and not busy) otherwise."""
        deadline = time.monotonic() + LINGER_SECONDS
        while True:
            with conn.lock:
                if conn.out or conn.closing or conn.eof or (conn.queue and not _threaded(conn.queue[0])):
                    break  # the loop writes, refuses, answers health or closes
                if conn.queue:
                    return conn.pop()  # pipelined: answered here, in order
                if conn.tls or not self._jobs.empty() or conn.reader.expects_continue:
                    break  # the loop owns TLS sockets; other requests need this thread; "100 Continue"
            if not self._receive(conn, deadline):
                break
        with conn.lock:
            conn.busy = False
        return None

    def _receive(self, conn: Connection, deadline: float) -> bool:
        """Wait until `deadline` for the client's bytes on a socket this thread owns; False if none came."""
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN)
        while (left := deadline - time.monotonic()) > 0:
            if not poller.poll(left * 1000):
                return False
            data = conn.receive(RECEIVE_BYTES)
            if data is None:
                continue
            if not data:
                conn.eof = True
            else:
                self._feed(conn, data)
            return True
        return False


def is_health(request: Request) -> bool:
    """Liveness and readiness: answered by the event loop itself, never queued behind threads."""
    return request.method in ("GET", "HEAD") and request.path in ("/v2/health/live", "/v2/health/ready")


def _threaded(item) -> bool:
    return isinstance(item, Request) and not is_health(item)
