"""A gthread worker that, on SIGTERM, also answers the clients still waiting in the listen backlog.

gunicorn's graceful stop finishes the requests it has accepted, but connections that completed
their TCP handshake and wait in the kernel's backlog are reset when the listening socket closes.
This worker accepts everything queued before it stops listening, then closes its copy of the
socket at once, so the backlog is empty by the time the last worker lets the socket go.
"""
from __future__ import annotations

from gunicorn.workers.gthread import TConn, ThreadWorker


class DrainingThreadWorker(ThreadWorker):
    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            self._drain_backlog()

    def _drain_backlog(self) -> None:
        for listener in self.sockets:
            listener.setblocking(False)
            while True:
                try:
                    client, address = listener.accept()
                except (BlockingIOError, InterruptedError, OSError):
                    break
                self.nr_conns += 1
                client.setblocking(True)
                self.enqueue_req(TConn(self.cfg, client, address, listener.getsockname()))
            # Closing now (not after the in-flight requests) narrows the window in which a new
            # connection could still land in a backlog that nobody will accept.
            listener.close()
