"""gunicorn settings for the service: plain Python, values from the typed settings.

Started by `python -m service`, which validates the settings and prepares
PROMETHEUS_MULTIPROC_DIR before exec'ing gunicorn with this file.
"""
import sys

from prometheus_client import multiprocess

from service import cores
from service.http import config as _http  # not a bare name: gunicorn reads any name that is a setting's
from service.settings import Settings

_settings = Settings.from_env()
# Runs under way in the whole server, in memory the workers inherit (service/cores.py).
cores.share()

# -- Binding ---------------------------------------------------------------------------------------
bind = f"{_settings.host}:{_settings.port}"
# Connections waiting to be accepted. Drained on SIGTERM by our worker, so a deep queue is safe.
backlog = 2048

# -- Workers ---------------------------------------------------------------------------------------
# One process per core: each holds its own onnxruntime session (intra-op threads = cores / workers)
# and batcher. Threads let one worker hold many concurrent requests that the batcher merges;
# they mostly wait, so 8-32 is sane.
workers = _settings.web_concurrency
# Our worker (service/http/worker.py): gunicorn's documented base.Worker, an event loop that parses
# with llhttp and hands only complete requests to `threads`; health is answered by the loop itself.
worker_class = "service.http.worker.ServiceWorker"
# Each worker listens on a socket of its own (SO_REUSEPORT) and the kernel spreads new
# connections over them. With one shared socket, the worker that wakes first accepts a burst of
# connections; kept-alive, they stay with it: wrk's 8 connections often all went to one worker.
# The price: connections queued on a worker that is killed outright are reset with it (a
# SIGTERM'd worker drains its queue first).
reuse_port = True
threads = _settings.threads
# Keep-alive lets load balancers and clients reuse connections (seconds).
keepalive = 5
# A worker silent for this long is killed and replaced (seconds); model loading happens before.
timeout = 60
# SIGTERM: finish in-flight requests (and the backlog) within this many seconds.
graceful_timeout = _settings.graceful_timeout
# The app is built in each worker, after fork: onnxruntime sessions and threads must not be forked.
preload_app = False

# gunicorn 27's control socket lives under $HOME: not writable on a read-only root filesystem, and
# shared by every server of one user. We manage workers with signals instead.
control_socket_disable = True

# -- Requests --------------------------------------------------------------------------------------
# Request line and header limits (414, 431); bodies are limited by MAX_REQUEST_BYTES (413); all JSON.
limit_request_line = 8190
limit_request_fields = 100

# -- Logging ---------------------------------------------------------------------------------------
loglevel = _settings.log_level
accesslog = None  # per-request logs cost throughput; Prometheus has the counts and latencies
errorlog = "-"


# -- Hooks -----------------------------------------------------------------------------------------
def on_starting(server):
    """Refuse, before any worker starts, a gunicorn setting the worker would silently ignore."""
    _http.check_config(server.cfg)


def child_exit(server, worker):
    """A dead worker's live gauges must stop counting (prometheus_client multiprocess mode)."""
    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker):
    """In the exiting worker: write the captures its queue still holds (service/capture.py, at most 2 s)."""
    from service.capture import flush_all  # noqa: PLC0415 (the worker's own modules, already imported)

    flush_all()


def post_worker_init(worker):
    """The app is built and its models loaded: say so, once per worker (tests and operators wait for it)."""
    worker.log.info("Worker ready (pid: %s), listening at: %s", worker.pid, ",".join(map(str, worker.sockets)))


def post_fork(server, worker):
    """Give the worker this process's settings; hand the GIL over sooner than Python's 5 ms default.

    The settings are the object this file built from the environment, once: the worker and the
    app it builds (service/http/worker.py) use it, never a second reading.

    Request threads decode in Python while a batch runs in onnxruntime (GIL released); when
    the run ends, its thread needs the GIL back to hand out results, and the device idles
    until it gets it. A shorter switch interval keeps that wait well under a millisecond.
    """
    worker.settings = _settings
    sys.setswitchinterval(0.0005)
