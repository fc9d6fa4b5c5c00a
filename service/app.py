"""The application factory: `create_app(settings)` wires every concern; nothing heavy at import."""
from __future__ import annotations

import logging

import numpy as np
import orjson
from flask import Flask
from flask.json.provider import JSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from service import errors, quality
from service.capture import Capturer
from service.device import providers
from service.decode.sandbox import Limits, Sandbox
from service.images import Decoder
from service.models import ModelManager
from service.poller import Poller
from service.settings import Settings


class OrjsonProvider(JSONProvider):
    """Flask's JSON through orjson: several times faster, and it serialises numpy arrays."""

    def dumps(self, obj, **kwargs) -> str:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY, default=_default).decode()

    def loads(self, s, **kwargs):
        return orjson.loads(s)


def _default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app for one process (a gunicorn worker, after fork, or a test)."""
    settings = settings or Settings.from_env()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    # No path is ever normalised by redirect (werkzeug would answer an HTML 308 page).
    app.url_map.merge_slashes = False

    manager = ModelManager(settings, providers(settings.device))
    poller = Poller(manager, settings.reload_poll_seconds, settings.repository_scan_timeout)
    poller.start()  # the first scan, waited for no longer than REPOSITORY_SCAN_TIMEOUT
    app.extensions["settings"] = settings
    app.extensions["models"] = manager
    app.extensions["poller"] = poller
    # Decoder processes start here, in the worker after gunicorn's fork (fork+exec: nothing inherited).
    sandbox = Sandbox(Limits(settings.decode_processes, settings.decode_memory_mb, settings.decode_timeout, settings.decode_wait_seconds))
    app.extensions["decoder"] = Decoder(settings.max_image_pixels, settings.max_request_pixels, sandbox, settings.decode_cpu_seconds)

    # Capture's writer thread starts here, in the worker after fork (a thread never survives a fork).
    if settings.capture_enabled:
        app.extensions["capture"] = Capturer(settings)
    for name in manager.names():  # drift series at zero from start-up, for the versions loaded by now
        try:
            quality.declare(manager.get(name))
        except errors.ServingError:  # not loaded (yet): declared at its first request
            pass

    from service.routes import admin, classify, feedback, inference, web  # noqa: PLC0415
    from service.routes import errors as error_pages, metrics as request_metrics  # noqa: PLC0415

    error_pages.init_app(app)
    request_metrics.init_app(app, settings, manager.names)
    feedback.init_app(app)
    for blueprint in (classify.bp, inference.bp, feedback.bp, admin.bp, web.bp):
        app.register_blueprint(blueprint)
    if settings.forwarded_for_hops:  # request.remote_addr: the client's, as the trusted proxies saw it
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.forwarded_for_hops)
    return app
