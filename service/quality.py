"""Model-quality signals per served version: live predictions, confidence and inputs; the reference."""
from __future__ import annotations

import threading

import numpy as np

from modelrepo.reference import mean_intensity
from service.metrics import (
    CONFIDENCE,
    FEEDBACK,
    FEEDBACK_OUTCOMES,
    INPUT_INTENSITY,
    PREDICTIONS,
    REFERENCE_ACCURACY,
    REFERENCE_CLASS_SHARE,
    REFERENCE_CONFIDENCE,
    REFERENCE_INTENSITY,
)
from service.served import Served

_declared: set[tuple[str, int]] = set()
_lock = threading.Lock()


def declare(served: Served) -> None:
    """Export a version's series at zero, and its reference as gauges, once per worker."""
    key = (served.name, served.version)
    if key in _declared:
        return
    with _lock:
        if key in _declared:
            return
        name, version, metadata = served.name, str(served.version), served.metadata
        for label in served.labels:
            PREDICTIONS.labels(name, version, label)
        for histogram in (CONFIDENCE, INPUT_INTENSITY):
            histogram.labels(name, version)
        for outcome in FEEDBACK_OUTCOMES:
            FEEDBACK.labels(name, version, outcome)
        if metadata.test_accuracy is not None:
            REFERENCE_ACCURACY.labels(name, version).set(metadata.test_accuracy)
        if (reference := metadata.reference) is not None:
            for label, share in zip(served.labels, reference.class_share):
                REFERENCE_CLASS_SHARE.labels(name, version, label).set(share)
            REFERENCE_CONFIDENCE.labels(name, version).set(reference.confidence_mean)
            REFERENCE_INTENSITY.labels(name, version).set(reference.input_mean_intensity)
        _declared.add(key)


def observe(served: Served, inputs: np.ndarray, probabilities: np.ndarray) -> None:
    """Count one request's predictions, top-1 probabilities and input intensities."""
    declare(served)
    name, version = served.name, str(served.version)
    classes = np.bincount(probabilities.argmax(axis=1), minlength=len(served.labels))
    for label, n in zip(served.labels, classes):
        if n:
            PREDICTIONS.labels(name, version, label).inc(int(n))
    confidence = CONFIDENCE.labels(name, version)
    for p in probabilities.max(axis=1):
        confidence.observe(float(p))
    intensity = INPUT_INTENSITY.labels(name, version)
    for share in mean_intensity(inputs, served.input.range):
        intensity.observe(float(share))


def feedback(model: str, version: int, right: bool) -> None:
    """Count one true label against the prediction of the version that made it."""
    FEEDBACK.labels(model, str(version), "right" if right else "wrong").inc()
