"""Our gunicorn worker: one event loop owns every socket, request threads only compute.

Built on gunicorn's documented extension point, `gunicorn.workers.base.Worker` (as uvicorn's
worker is), with llhttp as the parser (service/http/parser.py). The last round's worker was a
fork of gthread's private internals with a hand-written framer, and hostile clients broke it:
a chunk size of `-6` spun a worker forever, half-read requests held threads, a client that
never read held a thread in a blocking write. Here, by construction:

- The event loop reads every socket without blocking and parses as bytes arrive. A request
  reaches a thread only once it is complete, body included: threads never read a socket, so a
  slow client holds no thread. A request not complete within REQUEST_READ_TIMEOUT gets 408.
- Threads never wait on a client either: a response goes out in one non-blocking send, and
  what the socket does not take now the event loop writes when it can. A client that reads
  nothing for REQUEST_READ_TIMEOUT is disconnected.
- Health (GET /v2/health/live and /ready) is answered by the event loop itself, in order with
  the connection's other requests, never queued behind busy threads.
- Memory a client can make a worker hold is bounded: per request (the parser's limits), per
  connection (at most PIPELINE_DEPTH parsed requests waiting, reading stops meanwhile and the
  kernel's TCP window pushes back), per worker (BUFFER_BUDGET of incomplete requests; past it,
  the connections holding the most stop being read until it frees or their deadline passes).
- Connections are capped by worker_connections: past it, the longest-idle connection is
  closed for the new one, so 1,500 idle sockets cannot lock a health probe out.

Every answer of the HTTP layer itself (400, 408, 413, 414, 431, 505) is the service's JSON
error and is counted in serving_requests_total. On SIGTERM, connections still in the listen
backlog are accepted and served before the listener closes (gunicorn's graceful stop finishes
accepted requests only).
"""
from __future__ import annotations

import errno
import os
import queue
import resource
import selectors
import socket
import ssl
import threading
import time
from collections import deque

from gunicorn.workers.base import Worker

from service import metrics
from service.http import wsgi
from service.http.config import check_config, tls_context
from service.http.connection import Connection
from service.http.parser import Limits, Refusal, Request, RequestReader
from service.settings import Settings

# Incomplete request bytes one worker holds at most, over all its connections.
BUFFER_BUDGET = 64 * 1024 * 1024
# A request head (request line and headers) larger than this gets 431; nginx's default is 32 KiB.
MAX_HEAD_BYTES = 64 * 1024
# Parsed requests a connection may have waiting behind the one being served.
PIPELINE_DEPTH = 16
# Heartbeat, parent check and deadlines, at most this often: gthread did them on every event,
# and its heartbeat (a utime() on a file in /tmp) was a fifth of a worker's time at concurrency 1.
HOUSEKEEPING_SECONDS = 0.5
# Closing with unread request bytes makes the kernel reset the connection, and the client may
# lose our answer; so the write side closes first and the rest is read and dropped, this long.
LINGER_SECONDS, LINGER_BYTES = 2.0, 16 * 1024 * 1024
# On SIGTERM, a kept-alive connection with no request under way is closed after this long.
STOP_IDLE_SECONDS = 1.0
HEALTH_PATHS = (b"/v2/health/live", b"/v2/health/ready")
ACCEPT_BURST = 64
_RECV = 256 * 1024
_LISTENER, _WAKE = object(), object()
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class ServiceWorker(Worker):
    """gunicorn worker class: `worker_class = "service.http.worker.ServiceWorker"`."""

    def init_process(self) -> None:
        check_config(self.cfg)
        settings = Settings.from_env()
        self.read_timeout = settings.request_read_timeout
        self.limits = Limits(url=self.cfg.limit_request_line or 1 << 20, fields=self.cfg.limit_request_fields,
                             field=self.cfg.limit_request_field_size or 1 << 20, head=MAX_HEAD_BYTES,
                             body=settings.max_request_bytes)
        self.tls = tls_context(self.cfg)
        self.conns: dict[int, Connection] = {}
        self.selector = selectors.DefaultSelector()
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.returned: deque[Connection] = deque()  # handed back by threads: the loop has work on them
        self.buffered = 0  # incomplete request bytes held, over all connections
        self.starved: set[Connection] = set()  # not read while over BUFFER_BUDGET
        self.accepting = True
        _raise_open_files_limit()
        super().init_process()  # loads the app, runs post_worker_init, then run()

    # -- the event loop ---------------------------------------------------------------------------
    def run(self) -> None:
        for listener in self.sockets:
            listener.setblocking(False)
            self.selector.register(listener, _READ, _LISTENER)
        self.selector.register(self.PIPE[0], _READ, _WAKE)  # signals and threads wake the loop
        for i in range(self.cfg.threads):
            threading.Thread(target=self._work, name=f"request-{i}", daemon=True).start()
        next_housekeeping = 0.0
        while self.alive:
            self._poll(HOUSEKEEPING_SECONDS)
            if (now := time.monotonic()) >= next_housekeeping:
                next_housekeeping = now + HOUSEKEEPING_SECONDS
                self.notify()
                if os.getppid() != self.ppid:
                    self.log.info("Parent changed, shutting down: %s", self)
                    break
                self._housekeeping(now, self.cfg.keepalive)
        self._stop()

    def _poll(self, timeout: float) -> None:
        for key, events in self.selector.select(timeout):
            data = key.data
            if data is _WAKE:
                self._on_wake()
            elif data is _LISTENER:
                self._accept(key.fileobj)
            elif not data.closed:
                if events & _WRITE:
                    self._on_writable(data)
                if events & _READ and not data.closed:
                    self._on_readable(data)

    def _housekeeping(self, now: float, idle_seconds: float) -> None:
        """Deadlines: 408 for requests too slow to arrive, close idle, non-reading and lingering connections."""
        if not self.accepting and self.alive:
            self._accept_enabled(True)
        for conn in self.starved.copy():
            if self.buffered <= BUFFER_BUDGET:
                self.starved.discard(conn)
                self._update(conn)
        for conn in list(self.conns.values()):
            if conn.busy:
                continue  # a thread has it: no deadline, the request runs as long as it runs
            if conn.lingering or conn.handshaking:
                if now > conn.deadline:
                    self._close(conn)
            elif conn.out:
                if now - conn.written_at > self.read_timeout:
                    self._close(conn)  # the client reads nothing
            elif conn.reader.started is not None:
                if now - conn.reader.started > self.read_timeout:
                    self._account(conn, lambda: conn.reader.refuse(Refusal(
                        408, f"the request did not arrive within {self.read_timeout:g} s (REQUEST_READ_TIMEOUT)")))
                    self._advance(conn)
            elif not conn.queue and now - max(conn.idle_since, self.stopped_at) > idle_seconds:
                self._close(conn)

    stopped_at = 0.0

    def _stop(self) -> None:
        """Graceful stop: serve the backlog and the requests under way, within graceful_timeout."""
        self.alive = False
        self._accept_enabled(False)
        for listener in self.sockets:
            self._accept(listener, burst=1 << 30)  # the kernel's backlog: each was a client's connect()
            listener.close()
        self.stopped_at = time.monotonic()
        deadline = self.stopped_at + self.cfg.graceful_timeout
        while self.conns and time.monotonic() < deadline:
            self.notify()
            self._poll(0.1)
            self._housekeeping(time.monotonic(), min(self.cfg.keepalive, STOP_IDLE_SECONDS))
        for _ in range(self.cfg.threads):
            self.jobs.put(None)

    # -- connections ------------------------------------------------------------------------------
    def _accept(self, listener, burst: int = ACCEPT_BURST) -> None:
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
                self.log.warning("accept failed (%s): not accepting for %g s", exc, HOUSEKEEPING_SECONDS)
                self._accept_enabled(False)
                return
            if len(self.conns) >= self.cfg.worker_connections:
                self._evict_idle()
            self._open(sock, client, listener)

    def _accept_enabled(self, enabled: bool) -> None:
        if enabled == self.accepting:
            return
        self.accepting = enabled
        for listener in self.sockets:
            if enabled:
                self.selector.register(listener, _READ, _LISTENER)
            else:
                self.selector.unregister(listener)

    def _evict_idle(self) -> bool:
        """Close the longest-idle connection (none with a request under way); False if there is none."""
        for conn in self.conns.values():  # in order of acceptance
            if conn.idle:
                self._close(conn)
                return True
        return False

    def _open(self, sock: socket.socket, client, listener) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        conn = Connection(sock, client, wsgi.Site(listener.getsockname(), "https" if self.tls else "http"),
                          RequestReader(self.limits), tls=self.tls is not None)
        if conn.handshaking:
            conn.deadline = time.monotonic() + self.read_timeout
        self.conns[sock.fileno()] = conn
        self.selector.register(sock, _READ, conn)
        conn.mask = _READ

    def _on_readable(self, conn: Connection) -> None:
        if conn.handshaking:
            self._handshake(conn)
            return
        while True:  # TLS may hold decrypted bytes the kernel no longer reports as readable
            data = conn.receive(_RECV)
            if data is None:
                break
            if not data:
                self._on_eof(conn)
                return
            if conn.lingering:
                conn.dropped += len(data)
                if conn.dropped > LINGER_BYTES:
                    self._close(conn)
                    return
                continue
            self._account(conn, lambda: conn.reader.feed(data))
            if not conn.pending_tls():
                break
        if conn.reader.expects_continue and not conn.continued and not conn.busy and not conn.out:
            conn.continued = True  # the client holds its body back until told to send it
            conn.add_out(b"HTTP/1.1 100 Continue\r\n\r\n")
        if conn.reader.buffered and self.buffered > BUFFER_BUDGET:
            self.starved.add(conn)
        self._advance(conn)

    def _account(self, conn: Connection, step) -> None:
        """Run a parser step; queue what it completes and keep the worker's buffered-bytes count."""
        before = conn.reader.buffered
        done = step()
        self.buffered += conn.reader.buffered - before
        if conn.reader.started is None:
            conn.continued = False
        if done:
            with conn.lock:
                conn.queue.extend(done)

    def _on_eof(self, conn: Connection) -> None:
        """The client closed its side: answer what it sent, then close."""
        conn.eof = True
        self._forget_buffered(conn)
        if conn.lingering or conn.idle:
            self._close(conn)
        else:
            self._advance(conn)

    def _on_writable(self, conn: Connection) -> None:
        if conn.handshaking:
            self._handshake(conn)
        else:
            self._advance(conn)  # flushes, then answers what waited for the flush

    def _handshake(self, conn: Connection) -> None:
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            conn.handshake_wants = _READ
        except ssl.SSLWantWriteError:
            conn.handshake_wants = _WRITE
        except (ssl.SSLError, OSError) as exc:
            self.log.debug("TLS handshake failed from %s: %s", conn.client, exc)
            self._close(conn)
            return
        else:
            conn.handshaking = False
            conn.idle_since = time.monotonic()
        self._update(conn)

    def _on_wake(self) -> None:
        try:
            while os.read(self.PIPE[0], 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while self.returned:
            conn = self.returned.popleft()
            if not conn.closed:
                self._advance(conn)

    # -- answering, in order ----------------------------------------------------------------------
    def _advance(self, conn: Connection) -> None:
        """Answer the connection's next requests: refusals and health here, the rest in a thread."""
        while True:
            with conn.lock:
                while not conn.busy and conn.queue and not conn.closing:
                    item = conn.queue.popleft()
                    if isinstance(item, Refusal):
                        metrics.REQUESTS.labels("other", metrics.UNKNOWN, str(item.status)).inc()
                        conn.add_out(wsgi.refusal(item))
                        conn.closing = True
                    elif _is_health(item):
                        data, keep = self._answer(conn, item)
                        conn.add_out(data)
                        conn.closing = not keep
                    elif conn.out:
                        conn.queue.appendleft(item)  # a thread writes straight to the socket: `out` goes first
                        break
                    else:
                        conn.busy = True
                        self.jobs.put((conn, item))
                if conn.closing:
                    conn.queue.clear()
            self._flush(conn)
            if conn.closed:
                return
            if conn.busy or conn.out or not conn.queue:
                break  # else the flush made way for a request that waited for it
        if not conn.busy and not conn.out and not conn.queue:
            if conn.closing:
                self._linger(conn)
                return
            if conn.eof:
                self._close(conn)
                return
        self._update(conn)

    def _answer(self, conn: Connection, request: Request) -> tuple[bytes, bool]:
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        keep = request.keep_alive and self.alive and self.cfg.keepalive > 0 and not conn.eof
        return wsgi.respond(self.wsgi, wsgi.environ(request, conn.site, conn.client), request, keep)

    def _flush(self, conn: Connection) -> None:
        if conn.out and not conn.closed and not conn.handshaking:
            if conn.send_pending() is None:
                self._close(conn)  # the client is gone

    def _update(self, conn: Connection) -> None:
        """Register the events the loop waits for on this connection now."""
        if conn.closed:
            return
        if conn.handshaking:
            mask = conn.handshake_wants
        else:
            reading = not (conn.reader.closed or conn.eof or conn.closing or conn in self.starved) and len(conn.queue) < PIPELINE_DEPTH
            mask = (_READ if reading and not conn.out or conn.lingering else 0) | (_WRITE if conn.out else 0)
        with conn.lock:
            conn.loop_needed = mask != _READ  # a thread finishing must hand the connection back
        if mask != conn.mask:
            if conn.mask and mask:
                self.selector.modify(conn.sock, mask, conn)
            elif mask:
                self.selector.register(conn.sock, mask, conn)
            else:
                self.selector.unregister(conn.sock)
            conn.mask = mask

    def _linger(self, conn: Connection) -> None:
        """Close the write side, then read and drop what the client still sends, briefly."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.lingering, conn.deadline = True, time.monotonic() + LINGER_SECONDS
        self._update(conn)

    def _forget_buffered(self, conn: Connection) -> None:
        self.buffered -= conn.reader.buffered
        self.starved.discard(conn)

    def _close(self, conn: Connection) -> None:
        if conn.closed:
            return
        self._forget_buffered(conn)
        if conn.mask:
            self.selector.unregister(conn.sock)
        del self.conns[conn.sock.fileno()]
        conn.close()

    # -- the request threads ----------------------------------------------------------------------
    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            conn, request = job
            try:
                self._serve(conn, request)
            except Exception:
                self.log.exception("request thread failed")
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
                if conn.out or conn.closing or conn.loop_needed or conn.eof:
                    conn.busy = False
                elif conn.queue and isinstance(conn.queue[0], Request) and not _is_health(conn.queue[0]):
                    request = conn.queue.popleft()  # pipelined: no trip through the event loop
                    continue
                else:
                    conn.busy = False
                    if not conn.queue:
                        return  # the loop is reading the socket and will see the next request
            self._hand_back(conn)
            return

    def _hand_back(self, conn: Connection) -> None:
        self.returned.append(conn)
        try:
            os.write(self.PIPE[1], b".")
        except (BlockingIOError, InterruptedError):
            pass  # the pipe is full: the loop is already due to wake


def _is_health(request: Request) -> bool:
    return request.method in ("GET", "HEAD") and request.url.split(b"?", 1)[0] in HEALTH_PATHS


def _raise_open_files_limit() -> None:
    """Allow as many sockets as the hard limit does: a soft limit of 1,024 is common, and past it
    accept() fails while the clients wait in the backlog."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
