"""The event loop: accepts, reads, parses and writes every socket of a worker, without blocking.

Requests complete in the parser (service/http/parser.py) and queue on their connection; the
loop answers them in order: refusals and health itself, the rest through the request threads.
What a client can make the loop hold is bounded:

- per connection: at most PIPELINE_DEPTH parsed requests (and one request's worth of body)
  waiting; reading stops meanwhile, and the kernel's TCP window pushes back on the client;
- per worker: BUFFER_BUDGET bytes of requests, incomplete or waiting to be answered; past it,
  connections with a request under way are not read until it frees or their deadline passes;
- connections: past worker_connections, the longest-idle one is closed for the new one
  (service/http/accept.py);
- time: REQUEST_READ_TIMEOUT for a request to arrive (408) and for a client to read anything
  of its answer (closed), keep-alive for an idle connection, LINGER_SECONDS for a closing one.
"""
from __future__ import annotations

import logging
import os
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from service import metrics
from service.http import wsgi
from service.http.accept import LISTENER, Acceptor
from service.http.connection import Connection
from service.http.parser import Limits, Refusal, Request
from service.http.threads import RequestThreads, is_health

log = logging.getLogger(__name__)
BUFFER_BUDGET = 64 * 1024 * 1024
PIPELINE_DEPTH = 16
# Closing with unread request bytes makes the kernel reset the connection, and the client may
# lose our answer; so the write side closes first and the rest is read and dropped, this long.
LINGER_SECONDS, LINGER_BYTES = 2.0, 16 * 1024 * 1024
_RECV = 256 * 1024
_WAKE = object()
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class Timeouts(NamedTuple):
    read: float  # REQUEST_READ_TIMEOUT: a request to arrive, a client to read its answer
    keepalive: float  # gunicorn's keepalive: an idle connection


class EventLoop:
    def __init__(self, listeners: list, wake_fd: int, limits: Limits, timeouts: Timeouts, max_connections: int,
                 tls: ssl.SSLContext | None, threads: int, answer: Callable[[Connection, Request], tuple[bytes, bool]]):
        self._wake_fd, self.limits, self.timeouts, self._answer = wake_fd, limits, timeouts, answer
        self.conns: dict[int, Connection] = {}
        self.selector = selectors.DefaultSelector()
        self.door = Acceptor(listeners, self.selector, self.conns, self.close, tls, limits, timeouts.read, max_connections)
        self.threads = RequestThreads(threads, self._answer_and_release, self.hand_back, self._feed)
        self._returned: deque[Connection] = deque()  # handed back by threads: the loop has work on them
        self._held, self._held_lock = 0, threading.Lock()  # request bytes held, all connections
        self._starved: set[Connection] = set()  # not read while over BUFFER_BUDGET
        self.draining_since = 0.0  # set when the worker stops

    def start(self, wake_read_fd: int) -> None:
        self.selector.register(wake_read_fd, _READ, _WAKE)  # signals and threads wake the loop
        self._wake_read_fd = wake_read_fd
        self.door.set_accepting(True)
        self.threads.start()

    def poll(self, timeout: float) -> None:
        for key, events in self.selector.select(timeout):
            data = key.data
            if data is _WAKE:
                self._on_wake()
            elif data is LISTENER:
                self.door.accept(key.fileobj)
            elif not data.closed:
                try:
                    if events & _WRITE:
                        self._on_writable(data)
                    if events & _READ and not data.closed:
                        self._on_readable(data)
                except Exception:  # our bug: that connection closes, the worker and the others live on
                    log.exception("event loop failed on a connection from %s", data.client)
                    self.close(data)

    def expire(self, now: float, idle_seconds: float) -> None:
        """Deadlines: 408 for requests too slow to arrive; close idle, non-reading and lingering connections."""
        if not self.door.accepting and not self.draining_since:
            self.door.set_accepting(True)  # paused by EMFILE
        metrics.HTTP_HELD_BYTES.set(self._held)
        if self._held <= BUFFER_BUDGET:
            for conn in self._starved.copy():
                self._starved.discard(conn)
                self._update(conn)
        for conn in list(self.conns.values()):
            if conn.busy:
                continue  # a thread has it: no deadline, the request runs as long as it runs
            if conn.lingering or conn.handshaking:
                if now > conn.deadline:
                    self.close(conn)
            elif conn.out:
                if now - conn.written_at > self.timeouts.read:
                    self.close(conn)  # the client reads nothing
            elif conn.reader.started is not None:
                if now - conn.reader.started > self.timeouts.read:
                    message = f"the request did not arrive within {self.timeouts.read:g} s (REQUEST_READ_TIMEOUT)"
                    self._parsed(conn, lambda: conn.reader.refuse(Refusal(408, message)))
                    self._advance(conn)
            elif not conn.queue and now - max(conn.idle_since, self.draining_since) > idle_seconds:
                self.close(conn)

    def drain(self) -> None:
        """Stop: serve the connections the kernel's backlog holds, then accept no more."""
        self.draining_since = time.monotonic()
        self.door.drain()

    # -- connections ------------------------------------------------------------------------------
    def close(self, conn: Connection) -> None:
        if conn.closed:
            return
        with conn.lock:
            if conn.busy:  # a thread may still send on it: it hands the connection back, then it closes
                conn.eof = conn.closing = True
                return
        self._release(conn.reader.buffered + conn.drop_queue())
        self._starved.discard(conn)
        if conn.mask:
            self.selector.unregister(conn.sock)
        del self.conns[conn.sock.fileno()]
        conn.close()

    def _linger(self, conn: Connection) -> None:
        """Close the write side, then read and drop what the client still sends, briefly."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close(conn)
            return
        conn.lingering, conn.deadline = True, time.monotonic() + LINGER_SECONDS
        self._update(conn)

    # -- events -----------------------------------------------------------------------------------
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
                    self.close(conn)
                    return
            else:
                self._feed(conn, data)
            if not conn.pending_tls():
                break
        if conn.lingering:
            return
        if conn.reader.buffered and self._held > BUFFER_BUDGET:
            self._starved.add(conn)
        self._advance(conn)

    def _feed(self, conn: Connection, data: bytes) -> None:
        """Parse received bytes (in the loop, or in the thread that holds the connection)."""
        self._parsed(conn, lambda: conn.reader.feed(data))

    def _parsed(self, conn: Connection, step: Callable[[], list]) -> None:
        """Run a parser step; queue what it completes, and count the bytes held."""
        before = conn.reader.buffered
        done = step()
        if conn.reader.started is None:
            conn.continued = False
        with conn.lock:
            queued = conn.queued_bytes
            conn.push(done)
            queued = conn.queued_bytes - queued
        self._hold(conn.reader.buffered - before + queued)

    def _on_eof(self, conn: Connection) -> None:
        """The client closed its side: answer what it sent, then close."""
        conn.eof = True
        if conn.lingering or conn.idle:
            self.close(conn)
        else:
            self._release(conn.reader.buffered)
            conn.reader.discard()
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
            log.debug("TLS handshake failed from %s: %s", conn.client, exc)
            self.close(conn)
            return
        else:
            conn.handshaking = False
            conn.idle_since = time.monotonic()
        self._update(conn)

    def hand_back(self, conn: Connection) -> None:
        """From a thread: the loop has work on this connection."""
        self._returned.append(conn)
        try:
            os.write(self._wake_fd, b".")
        except (BlockingIOError, InterruptedError):
            pass  # the pipe is full: the loop is already due to wake

    def _on_wake(self) -> None:
        try:
            while os.read(self._wake_read_fd, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while self._returned:
            conn = self._returned.popleft()
            if not conn.closed:
                self._advance(conn)

    # -- answering, in order ----------------------------------------------------------------------
    def _advance(self, conn: Connection) -> None:
        """Answer the connection's next requests: refusals and health here, the rest in a thread."""
        while True:
            with conn.lock:
                while not conn.busy and conn.queue and not conn.closing:
                    item = conn.pop()
                    if isinstance(item, Refusal):
                        metrics.REQUESTS.labels("other", metrics.UNKNOWN, str(item.status)).inc()
                        conn.add_out(wsgi.refusal(item))
                        conn.closing = True
                    elif is_health(item):
                        data, keep = self._answer_and_release(conn, item)
                        conn.add_out(data)
                        conn.closing = not keep
                    elif conn.out:
                        conn.unpop(item)  # a thread writes straight to the socket: `out` goes first
                        break
                    else:
                        conn.busy = True
                        self.threads.submit(conn, item)
                if conn.closing:
                    self._release(conn.drop_queue())
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
                self.close(conn)
                return
            if conn.reader.expects_continue and not conn.continued:
                conn.continued = True  # the client holds its body back until told to send it
                conn.add_out(b"HTTP/1.1 100 Continue\r\n\r\n")
                self._flush(conn)
        self._update(conn)

    def _answer_and_release(self, conn: Connection, request: Request) -> tuple[bytes, bool]:
        try:
            return self._answer(conn, request)
        finally:
            self._release(len(request.body))

    def _flush(self, conn: Connection) -> None:
        if conn.out and not conn.closed and not conn.handshaking and conn.send_pending() is None:
            self.close(conn)  # the client is gone

    def _update(self, conn: Connection) -> None:
        """Register the events the loop waits for on this connection now."""
        if conn.closed:
            return
        if conn.handshaking:
            mask = conn.handshake_wants
        elif conn.busy and not conn.tls:
            mask = 0  # the thread answering it reads its next request (service/http/threads.py)
        elif conn.lingering:
            mask = _READ
        else:
            reading = not (conn.reader.closed or conn.eof or conn.closing or conn.out or conn in self._starved
                           or len(conn.queue) >= PIPELINE_DEPTH or conn.queued_bytes >= self.limits.body)
            mask = (_READ if reading else 0) | (_WRITE if conn.out else 0)
        if mask != conn.mask:
            if conn.mask and mask:
                self.selector.modify(conn.sock, mask, conn)
            elif mask:
                self.selector.register(conn.sock, mask, conn)
            else:
                self.selector.unregister(conn.sock)
            conn.mask = mask

    def _hold(self, size: int) -> None:
        if size:
            with self._held_lock:
                self._held += size

    def _release(self, size: int) -> None:
        self._hold(-size)
