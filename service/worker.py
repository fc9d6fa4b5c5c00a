"""Our gunicorn worker: gthread's thread pool, with an event loop that reads requests whole first.

gunicorn's gthread hands a connection to a request thread as soon as its first byte arrives, and
the thread then blocks reading the rest: eight clients sending their headers a byte at a time
kept one worker's eight threads (and /v2/health/live) busy for 150 s. Here the event loop reads
what each socket holds without blocking, and a request reaches a thread only once its head and
body are complete (service/framing.py), so threads only ever compute. A request that is not
complete within REQUEST_READ_TIMEOUT gets 408 and its connection closes; a body over
MAX_REQUEST_BYTES gets 413 before it is read. Buffered request bytes per worker are bounded:
past BUFFER_BUDGET, requests go to threads as they are, which read the rest with the same timeout.

On SIGTERM it also answers the clients still waiting in the listen backlog: gunicorn's graceful
stop finishes accepted requests, but connections queued in the kernel were reset when the
listening socket closed.

Responses leave in one write (service/responses.py).
"""
from __future__ import annotations

import errno
import select
import selectors
import socket
import threading
import time
from datetime import datetime
from functools import partial

from gunicorn import http
from gunicorn.http import wsgi
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

from service import metrics
from service.framing import Frame
from service.responses import CoalescingResponse, canned
from service.settings import Settings

BUFFER_BUDGET = 64 * 1024 * 1024  # request bytes one worker's event loop may hold at once
# Heartbeat, parent check and deadlines, at most this often: gthread does them on every event,
# and its heartbeat (a utime() on a file in /tmp) was a fifth of a worker's time at concurrency 1.
HOUSEKEEPING_SECONDS = 0.5
# After answering a kept-alive connection, a thread with nothing else queued waits this long for
# the client's next request and serves it itself: a closed-loop client sends it within a fraction
# of a millisecond, and the round trip through the event loop (two thread hand-offs and a pipe
# write per request) was a fifth of a busy worker's time. A slower client costs the thread no more.
LINGER_FOR_NEXT_SECONDS = 0.002
# Closing with unread request bytes makes the kernel reset the connection, and the client may
# lose our answer; so the write side closes first and the rest is read and dropped, this long.
LINGER_SECONDS, LINGER_BYTES = 2.0, 16 * 1024 * 1024
_RECV = 256 * 1024


class ServiceWorker(ThreadWorker):
    def init_process(self) -> None:
        settings = Settings.from_env()
        self.read_timeout = settings.request_read_timeout
        self.max_body = settings.max_request_bytes
        self.max_head = self.cfg.limit_request_line + self.cfg.limit_request_field_size * max(self.cfg.limit_request_fields, 1)
        self.waiting: dict[TConn, float] = {}  # connections the event loop reads → their deadline
        self.buffered = 0
        self.queued = 0  # requests dispatched to the pool and not yet picked up by a thread
        self.queued_lock = threading.Lock()
        self.too_large = "413", canned("413 Content Too Large", f"request body over {self.max_body:,} bytes (MAX_REQUEST_BYTES)")
        self.too_slow = "408", canned("408 Request Timeout", f"the request did not arrive within {self.read_timeout:g} s "
                                                             "(REQUEST_READ_TIMEOUT)")
        super().init_process()

    # -- the event loop ---------------------------------------------------------------------------
    def run(self) -> None:
        self.poller.register(self.method_queue.fileno(), selectors.EVENT_READ, self.method_queue.run_callbacks)
        next_housekeeping = 0.0
        while self.alive:
            can_accept = self.nr_conns < self.worker_connections
            if can_accept != self._accepting:
                self.set_accept_enabled(can_accept)
            self.wait_for_and_dispatch_events(timeout=HOUSEKEEPING_SECONDS)
            if (now := time.monotonic()) >= next_housekeeping:
                next_housekeeping = now + HOUSEKEEPING_SECONDS
                self.notify()
                if not self.is_parent_alive():
                    break
                self._expire(now)
        # Graceful stop: no new connections (the backlog is drained first), requests under way are
        # finished, idle kept-alive connections are closed after a short linger.
        self.set_accept_enabled(False)
        idle_until = time.monotonic() + STOP_KEEPALIVE_LINGER
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while self.nr_conns > 0 and time.monotonic() < deadline:
            self.notify()
            self.wait_for_and_dispatch_events(timeout=0.2)
            self._expire(time.monotonic(), idle_until)
        for conn in list(self.waiting):
            self._close(conn)
        self.tpool.shutdown(wait=False)
        self.poller.close()
        self.method_queue.close()
        for listener in self.sockets:
            listener.close()

    def accept(self, listener) -> None:
        self._accept_one(listener)

    def _accept_one(self, listener) -> bool:
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return False
        self.nr_conns += 1
        conn = TConn(self.cfg, client, address, listener.getsockname())
        self._read_request(conn, Frame(self.max_head, self.max_body), time.monotonic() + self.read_timeout)
        return True

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            for listener in self.sockets:
                listener.setblocking(False)
                while self._accept_one(listener):
                    pass
                # Closing now (not after the requests under way) narrows the window in which a
                # new connection could still land in a backlog that nobody will accept.
                listener.close()

    def _read_request(self, conn: TConn, frame: Frame, deadline: float) -> None:
        """Let the event loop collect the connection's next request."""
        conn.frame = frame
        conn.sock.setblocking(False)
        self.waiting[conn] = deadline
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    @staticmethod
    def _receive(conn: TConn) -> bytes | None:
        """What the socket holds now: None if nothing after all, b"" once the client is gone."""
        try:
            return conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def _on_readable(self, conn: TConn, _sock) -> None:
        data = self._receive(conn)
        if data is None:
            return
        if not data:  # the client went away
            self._close(conn)
            return
        frame: Frame = conn.frame
        if frame.started is None:  # a kept-alive connection's next request: its own clock starts
            self.waiting[conn] = time.monotonic() + self.read_timeout
        self.buffered += len(data)
        ready = frame.feed(data) or self.buffered > BUFFER_BUDGET
        if frame.oversized:
            self._refuse(conn, self.too_large)
        elif ready:
            self._dispatch(conn)
        else:
            self._continue_if_asked(conn, frame)

    def _continue_if_asked(self, conn: TConn, frame: Frame) -> None:
        if frame.expects_continue and not frame.continued:
            frame.continued = True  # the client holds its body back until told to send it
            self._send_quietly(conn, b"HTTP/1.1 100 Continue\r\n\r\n")

    def _dispatch(self, conn: TConn) -> None:
        self._forget(conn)
        self.enqueue_req(conn)

    def enqueue_req(self, conn: TConn) -> None:
        with self.queued_lock:
            self.queued += 1
        super().enqueue_req(conn)

    def _expire(self, now: float, idle_until: float | None = None) -> None:
        """408 for requests too slow to arrive; close idle connections past keep-alive (or the stop
        linger) and lingering ones past their linger."""
        for conn, deadline in list(self.waiting.items()):
            frame = conn.frame
            if frame is None:
                if now > deadline:
                    self._close(conn)
            elif frame.started is not None:
                if now > deadline:
                    self._refuse(conn, self.too_slow)
            elif now > deadline or (idle_until is not None and now > idle_until):
                self._close(conn)

    def _refuse(self, conn: TConn, refusal: tuple[str, bytes]) -> None:
        status, response = refusal
        # Counted like any answer; these never reach Flask, nor name a model.
        metrics.REQUESTS.labels("other", metrics.UNKNOWN, status).inc()
        self._send_quietly(conn, response)
        self._forget(conn)
        self._linger(conn)

    @staticmethod
    def _send_quietly(conn: TConn, data: bytes) -> None:
        try:
            conn.sock.send(data)  # non-blocking, best effort: the client may be gone or not reading
        except OSError:
            pass

    def _linger(self, conn: TConn) -> None:
        """Close the write side, then read and drop what the client still sends, briefly."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.nr_conns -= 1
            conn.close()
            return
        conn.frame, conn.dropped = None, 0
        conn.sock.setblocking(False)
        self.waiting[conn] = time.monotonic() + LINGER_SECONDS
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._drop, conn))

    def _drop(self, conn: TConn, _sock) -> None:
        data = self._receive(conn)
        if data is None:
            return
        conn.dropped += len(data)
        if not data or conn.dropped > LINGER_BYTES:
            self._close(conn)

    def _forget(self, conn: TConn) -> None:
        """Stop reading the connection for a request (it is answered, dispatched or closing)."""
        if conn in self.waiting:
            del self.waiting[conn]
            if conn.frame is not None:
                self.buffered -= len(conn.frame.data)
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass

    def _close(self, conn: TConn) -> None:
        self._forget(conn)
        self.nr_conns -= 1
        conn.close()

    def finish_request(self, conn: TConn, fs) -> None:
        """Back on the event loop after a request: keep the connection for its next request, or close it."""
        if fs.cancelled() or fs.exception() is not None:
            self.nr_conns -= 1
            conn.close()
            return
        if fs.result() is not True:
            self._linger(conn)
            return
        frame = getattr(conn, "next_frame", None) or Frame(self.max_head, self.max_body)
        conn.next_frame = None
        leftover = conn.parser.unreader.take_buffered()  # a client may pipeline its next request
        if leftover:
            frame.feed(leftover)
        if frame.done:
            conn.frame = frame
            if frame.oversized:
                self._refuse(conn, self.too_large)
            else:
                self.enqueue_req(conn)
            return
        if frame.started is not None:  # part of the next request is in: its clock runs
            deadline = frame.started + self.read_timeout
            self.buffered += len(frame.data)
        else:
            deadline = time.monotonic() + (self.cfg.keepalive if self.alive else min(self.cfg.keepalive, STOP_KEEPALIVE_LINGER))
        self._read_request(conn, frame, deadline)
        self._continue_if_asked(conn, frame)

    # -- the request threads ----------------------------------------------------------------------
    def handle(self, conn: TConn):
        """Serve the connection's complete request, and its next ones while they come at once
        (runs in a pool thread); True keeps the connection."""
        with self.queued_lock:
            self.queued -= 1
        while True:
            keep = self._serve(conn)
            if not keep or not self.alive or self.queued or not self._next_request(conn):
                return keep

    def _serve(self, conn: TConn) -> bool:
        """Serve one complete request; True keeps the connection."""
        req = None
        try:
            conn.init()
            # Threads never wait on a client for long: writes (and the rare read past the
            # buffered request) time out like the event loop's reads.
            conn.sock.settimeout(self.read_timeout)
            conn.parser.unreader.unread(conn.frame.take())
            req = next(conn.parser)
            if not req:
                return False
            if conn.frame.continued:
                req._expected_100_continue = False  # the event loop already said "100 Continue"
            keep = self.handle_request(req, conn)
            # The body is buffered, so draining what the app left unread never waits.
            return keep and conn.parser.finish_body(max_bytes=self.max_body)
        except http.errors.NoMoreData as exc:
            self.log.debug("Ignored premature client disconnection. %s", exc)
        except StopIteration as exc:
            self.log.debug("Closing connection. %s", exc)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, None):
                self.log.exception("Socket error processing request.")
        except Exception as exc:
            self.handle_error(req, conn.sock, conn.client, exc)
        return False

    def _next_request(self, conn: TConn) -> bool:
        """Wait LINGER_FOR_NEXT_SECONDS for the client's next request: True when it arrived whole
        (it becomes conn.frame); otherwise what came is left for the event loop (conn.next_frame)."""
        frame = Frame(self.max_head, self.max_body)
        leftover = conn.parser.unreader.take_buffered()
        if leftover and frame.feed(leftover) and not frame.oversized:
            conn.frame = frame
            return True
        deadline = time.monotonic() + LINGER_FOR_NEXT_SECONDS
        while (left := deadline - time.monotonic()) > 0 and select.select([conn.sock], [], [], left)[0]:
            try:
                data = conn.sock.recv(_RECV, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                break  # the client is gone: the event loop closes the connection
            if frame.feed(data) and not frame.oversized:
                conn.frame = frame
                return True
            if frame.oversized or frame.expects_continue:
                break  # the event loop answers these
        conn.next_frame = frame if frame.started is not None else None
        return False

    def handle_request(self, req, conn: TConn) -> bool:
        environ, resp = {}, None
        try:
            self.cfg.pre_request(self, req)
            started = datetime.now()
            resp, environ = wsgi.create(req, conn.sock, conn.client, conn.server, self.cfg, response_class=CoalescingResponse)
            environ["wsgi.multithread"] = True
            self.nr += 1
            if self.nr >= self.max_requests and self.alive:
                self.log.info("Autorestarting worker after current request.")
                self.alive = False
            if not self.alive or not self.cfg.keepalive:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                for item in respiter:
                    resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - started)
                if hasattr(respiter, "close"):
                    respiter.close()
            return not resp.should_close()
        except (Exception, SystemExit):
            if resp is not None and resp.headers_sent and not resp._head:
                # Part of the response is out: a 500 now would corrupt it.
                self.log.exception("Error handling request")
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")
