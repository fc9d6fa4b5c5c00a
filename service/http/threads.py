"""The request threads: they take complete requests, run the app, and never wait on a client.

A thread answers a request, sends what the socket takes at once (non-blocking), and answers the
connection's next request itself when it is already parsed (pipelining without a trip through
the event loop). Anything else, a response the socket did not take whole, a connection to
close, a loop that paused reading, goes back to the event loop through `hand_back`.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from service.http.connection import Connection
from service.http.parser import Request

log = logging.getLogger(__name__)
Answer = Callable[[Connection, Request], tuple[bytes, bool]]


class RequestThreads:
    def __init__(self, count: int, answer: Answer, hand_back: Callable[[Connection], None]):
        self._count, self._answer, self._hand_back = count, answer, hand_back
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

    def _serve(self, conn: Connection, request: Request) -> None:
        """Answer a request, and the connection's next ones while they are already parsed."""
        while True:
            data, keep = self._answer(conn, request)
            sent = conn.send_now(data)
            with conn.lock:
                if sent < len(data):
                    conn.add_out(data[sent:])
                conn.closing = conn.closing or not keep
                conn.idle_since = time.monotonic()
                if not (conn.out or conn.closing or conn.loop_needed or conn.eof) and conn.queue and _threaded(conn.queue[0]):
                    request = conn.pop()  # pipelined: answered here, in order
                    continue
                conn.busy = False
                if not (conn.out or conn.closing or conn.loop_needed or conn.eof or conn.queue):
                    return  # the loop is reading the socket and sees the next request
            self._hand_back(conn)
            return


def is_health(request: Request) -> bool:
    """Liveness and readiness: answered by the event loop itself, never queued behind threads."""
    return request.method in ("GET", "HEAD") and request.path in ("/v2/health/live", "/v2/health/ready")


def _threaded(item) -> bool:
    return isinstance(item, Request) and not is_health(item)
