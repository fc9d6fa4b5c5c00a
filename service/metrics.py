"""Prometheus metrics, as module constants; multiprocess-safe under gunicorn. Definitions only:
the Flask hooks that count requests and serve /metrics are in service/routes/metrics.py.

Multiprocess mode is switched on by PROMETHEUS_MULTIPROC_DIR, which the launcher sets and wipes
before gunicorn starts (never the app). Without it (tests, one process) the default registry is used.
"""
from __future__ import annotations

from pathlib import Path

from modelrepo.reference import BUCKETS
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess

# Millisecond-scale latencies: 0.5 ms … 10 s.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
# The APIs that serve a model: their series exist from start-up for every model (see declare_model).
MODEL_APIS = ("v1", "v2")
UNKNOWN = "unknown"

REQUESTS = Counter("serving_requests", "HTTP requests handled", ["api", "model", "status"])
REQUEST_SECONDS = Histogram(
    "serving_request_duration_seconds", "Whole request time in the server", ["api", "model"], buckets=LATENCY_BUCKETS
)
INFERENCE_SECONDS = Histogram(
    "serving_inference_duration_seconds", "onnxruntime run time per batch", ["model"], buckets=LATENCY_BUCKETS
)
QUEUE_SECONDS = Histogram(
    "serving_queue_duration_seconds", "Time an image waited for its batch to start", ["model"], buckets=LATENCY_BUCKETS
)
BATCH_SIZE = Histogram("serving_inference_batch_size", "Images per onnxruntime run", ["model"], buckets=BATCH_BUCKETS)
BATCH_WAIT = Gauge(
    "serving_batch_wait_seconds", "Longest a batch waits for requests still decoding (0: it merges only what is queued)",
    ["model"], multiprocess_mode="livemax",
)
IMAGES = Counter("serving_images", "Images classified", ["model", "version"])
IN_PROGRESS = Gauge("serving_requests_in_progress", "Requests being handled", multiprocess_mode="livesum")
MODEL_INFO = Gauge(
    "serving_model_info", "1 for the version a live worker serves, 0 once replaced", ["model", "version", "provider"],
    multiprocess_mode="livemax",
)
LOAD_FAILURES = Counter("serving_model_load_failures", "Model versions that failed to load or validate", ["model"])
REPOSITORY_SCANS = Counter("serving_repository_scans", "Scans of the model repository by the reload pollers (a stalled poller stops it)")


def declare_model(name: str) -> None:
    """Export every per-model series at zero now, not at its first event.

    Dashboards and alerts (`rate(...)`, `increase(...)`) need a series to exist before the first
    request, failure or batch; Prometheus practice is to initialise known label values.
    """
    for api in MODEL_APIS:
        REQUESTS.labels(api, name, "200")
        REQUEST_SECONDS.labels(api, name)
    for histogram in (INFERENCE_SECONDS, QUEUE_SECONDS, BATCH_SIZE):
        histogram.labels(name)
    LOAD_FAILURES.labels(name)


def registry(multiproc_dir: Path | None) -> CollectorRegistry:
    """A fresh multiprocess registry per scrape (PROMETHEUS_MULTIPROC_DIR), or the default one in a single process."""
    if multiproc_dir is None:
        return REGISTRY
    collector_registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(collector_registry, str(multiproc_dir))
    return collector_registry


# -- the model repository's scans ------------------------------------------------------------------
# A scan that outlives REPOSITORY_SCAN_TIMEOUT (a hung filesystem, a version whose warm-up never
# ends): the poller stops waiting for it and counts it here. Unlabelled, so every worker exports
# it at zero from start-up.
REPOSITORY_SCAN_TIMEOUTS = Counter(
    "serving_repository_scan_timeouts", "Repository scans abandoned after REPOSITORY_SCAN_TIMEOUT seconds (each stuck scan once)"
)


# -- image decoding (service/decode/) ----------------------------------------------------------------
# Images refused because decoding them passed, or would pass, a decoder process's limit (memory,
# cpu, time), or because the process died otherwise (crash: a decoder bug the image found); a
# process that passed a limit or died is replaced. Each worker exports every reason at zero.
DECODE_REFUSALS = Counter("serving_decode_refusals", "Images refused by a decoder limit (memory, cpu, time) or crash", ["reason"])
DECODE_REASONS = ("memory", "cpu", "time", "crash")


# -- the HTTP layer (service/http/) ------------------------------------------------------------------
# Request bytes a worker's event loop holds, incomplete requests and complete ones not yet
# answered; bounded by BUFFER_BUDGET (64 MiB) a worker. Updated twice a second.
HTTP_HELD_BYTES = Gauge("serving_http_held_bytes", "Request bytes held by the HTTP layer, incomplete or waiting to be answered",
                        multiprocess_mode="livesum")


# -- model quality: what the model predicts, how sure it is, what it is shown, whether it was right --
# Compared against the reference the version recorded on its validation split (REFERENCE_*), these
# show drift without labels; feedback adds live accuracy. Labels are bounded: model and version
# from the repository, class from the model's labels, outcome right/wrong. Declared at zero for
# each served version (service/quality.py).
SHARE_BUCKETS = BUCKETS  # the reference's buckets (modelrepo/reference.py), so live and reference compare
PREDICTIONS = Counter("serving_predictions", "Images predicted as each class (top-1)", ["model", "version", "class"])
CONFIDENCE = Histogram("serving_prediction_confidence", "Top-1 probability of each image", ["model", "version"],
                       buckets=SHARE_BUCKETS)
INPUT_INTENSITY = Histogram("serving_input_mean_intensity", "Mean of each image's model input, as a share of its range",
                            ["model", "version"], buckets=SHARE_BUCKETS)
FEEDBACK = Counter("serving_feedback", "True labels received, by whether the prediction was right", ["model", "version", "outcome"])
FEEDBACK_OUTCOMES = ("right", "wrong")
REFERENCE_CLASS_SHARE = Gauge("serving_reference_class_share", "Share of each class among the version's validation predictions",
                              ["model", "version", "class"], multiprocess_mode="livemax")
REFERENCE_CONFIDENCE = Gauge("serving_reference_confidence_mean", "Mean top-1 probability on the version's validation split",
                             ["model", "version"], multiprocess_mode="livemax")
REFERENCE_INTENSITY = Gauge("serving_reference_input_mean_intensity", "Mean input intensity of the version's validation split",
                            ["model", "version"], multiprocess_mode="livemax")
REFERENCE_ACCURACY = Gauge("serving_reference_accuracy", "Test accuracy on the version's model card", ["model", "version"],
                           multiprocess_mode="livemax")


# -- capture (service/capture.py) ---------------------------------------------------------------------
# Captures the store never got: the worker's queue was full, or the store failed (down, full disk);
# the request succeeded anyway. Every reason exported at zero by each worker.
CAPTURED = Counter("serving_captures_written", "Images written to the capture store")
CAPTURE_DROPS = Counter("serving_capture_dropped", "Captures lost, by reason (the request still succeeded)", ["reason"])
CAPTURE_DROP_REASONS = ("queue_full", "store_error")
CAPTURE_PRUNED = Counter("serving_capture_pruned", "Captures deleted by retention (age or row count)")
