"""GET /metrics, and every request counted: status, latency, in progress (the metrics' Flask glue)."""
from __future__ import annotations

import time
from collections.abc import Callable, Collection

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.metrics import DECODE_REASONS, DECODE_REFUSALS, IN_PROGRESS, REQUEST_SECONDS, REQUESTS, UNKNOWN, registry
from service.settings import Settings


def init_app(app: Flask, settings: Settings, known_models: Callable[[], Collection[str]]) -> None:
    """Serve /metrics and count every request: status, latency, in progress.

    Only names in `known_models()` become label values, so URLs cannot grow the series count;
    a path that matched no route is counted as model="unknown".
    """
    for reason in DECODE_REASONS:  # every refusal reason exported from start-up
        DECODE_REFUSALS.labels(reason)

    def model_label() -> str:
        if request.url_rule is None:
            return UNKNOWN
        name = (request.view_args or {}).get("name") or settings.model_name
        return name if name in known_models() else UNKNOWN

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(registry(settings.prometheus_multiproc_dir)), content_type=CONTENT_TYPE_LATEST)

    @app.before_request
    def start_timer():
        g.started = time.perf_counter()
        IN_PROGRESS.inc()

    @app.after_request
    def count(response: Response) -> Response:
        if "started" in g:
            api, model = request.blueprint or "other", model_label()
            REQUESTS.labels(api, model, str(response.status_code)).inc()
            REQUEST_SECONDS.labels(api, model).observe(time.perf_counter() - g.started)
        return response

    @app.teardown_request
    def done(exc: BaseException | None) -> None:
        if g.pop("started", None) is not None:
            IN_PROGRESS.dec()
