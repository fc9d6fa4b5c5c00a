"""Our gunicorn worker: one event loop owns every socket, request threads only compute.

Built on gunicorn's documented extension point, `gunicorn.workers.base.Worker` (as uvicorn's
worker is), with llhttp as the parser (service/http/parser.py). The last round's worker was a
fork of gthread's private internals with a hand-written framer, and hostile clients broke it:
a chunk size of `-6` spun a worker forever, half-read requests held threads, a client that
never read held a thread in a blocking write. Here, by construction (service/http/loop.py):

- the event loop reads every socket without blocking and parses as bytes arrive; a request
  reaches a thread only once it is complete, body included, so a slow client holds no thread;
- threads never wait on a client either: a response goes out in one non-blocking send, and
  what the socket does not take the event loop writes when it can;
- health (GET /v2/health/live and /ready) is answered by the event loop itself, in order with
  the connection's other requests, never queued behind busy threads;
- every answer of the HTTP layer itself (400, 408, 413, 414, 431, 505) is the service's JSON
  error, counted in serving_requests_total.

On SIGTERM, connections still in the listen backlog are accepted and served before the
listener closes (gunicorn's graceful stop finishes accepted requests only).
"""
from __future__ import annotations

import os
import resource
import time

from gunicorn.workers.base import Worker

from service.http import wsgi
from service.http.config import check_config, tls_context
from service.http.connection import Connection
from service.http.loop import EventLoop, Timeouts
from service.http.parser import Limits, Request
from service.settings import Settings

# A request head (request line and headers) larger than this gets 431; nginx's default is 32 KiB.
MAX_HEAD_BYTES = 64 * 1024
# Heartbeat, parent check and deadlines, at most this often: gthread did them on every event,
# and its heartbeat (a utime() on a file in /tmp) was a fifth of a worker's time at concurrency 1.
HOUSEKEEPING_SECONDS = 0.5
# On SIGTERM, a kept-alive connection with no request under way is closed after this long.
STOP_IDLE_SECONDS = 1.0


class ServiceWorker(Worker):
    """gunicorn worker class: `worker_class = "service.http.worker.ServiceWorker"`."""

    # The master's settings, handed over by gunicorn.conf.py's post_fork: the worker and its app share them.
    settings: Settings

    def init_process(self) -> None:
        check_config(self.cfg)
        settings = self.settings
        limits = Limits(url=self.cfg.limit_request_line or 1 << 20, fields=self.cfg.limit_request_fields,
                        field=self.cfg.limit_request_field_size or 1 << 20, head=MAX_HEAD_BYTES,
                        body=settings.max_request_bytes)
        self.loop_args = (limits, Timeouts(settings.request_read_timeout, self.cfg.keepalive), self.cfg.worker_connections,
                          tls_context(self.cfg), self.cfg.threads)
        _raise_open_files_limit()
        super().init_process()  # loads the app, runs post_worker_init, then run()

    def load_wsgi(self) -> None:
        """Build the app in this worker, after fork, from the process's one Settings object."""
        from service.app import create_app  # noqa: PLC0415 (nothing of the app is imported before fork)

        self.wsgi = create_app(self.settings)

    def run(self) -> None:
        for listener in self.sockets:
            listener.setblocking(False)
        loop = EventLoop(self.sockets, self.PIPE[1], *self.loop_args, answer=self.answer)
        loop.start(self.PIPE[0])  # the pipe gunicorn's signal handlers write to: SIGTERM wakes the loop
        next_housekeeping = 0.0
        while self.alive:
            loop.poll(HOUSEKEEPING_SECONDS)
            if (now := time.monotonic()) >= next_housekeeping:
                next_housekeeping = now + HOUSEKEEPING_SECONDS
                self.notify()
                if os.getppid() != self.ppid:
                    self.log.info("Parent changed, shutting down: %s", self)
                    break
                loop.expire(now, self.cfg.keepalive)
        self.alive = False
        self._stop(loop)

    def _stop(self, loop: EventLoop) -> None:
        """Graceful stop: serve the backlog and the requests under way, within graceful_timeout."""
        loop.drain()
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while loop.conns and time.monotonic() < deadline:
            self.notify()
            loop.poll(0.1)
            loop.expire(time.monotonic(), min(self.cfg.keepalive, STOP_IDLE_SECONDS))
        loop.threads.stop()

    def answer(self, conn: Connection, request: Request) -> tuple[bytes, bool]:
        """Run the app on one complete request: the response's bytes, and whether to keep the connection."""
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        keep = request.keep_alive and self.alive and self.cfg.keepalive > 0 and not conn.eof
        return wsgi.respond(self.wsgi, wsgi.environ(request, conn.site, conn.client), request, keep)


def _raise_open_files_limit() -> None:
    """Allow as many sockets as the hard limit does: a soft limit of 1,024 is common, and past it
    accept() fails while the clients wait in the backlog."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
