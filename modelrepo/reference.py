"""The drift reference of a version: its class mix, confidence and input intensity on held-out images.

Computed at publish time (training/) and for the shipped models (scripts), read by the service,
which measures live traffic with the same functions and buckets, so the two compare.
"""
from __future__ import annotations

import numpy as np

from modelrepo.schema import Reference

# Upper bounds of the confidence and intensity histograms (shares, 0…1); the service's too.
BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


def mean_intensity(inputs: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """Each image's mean input value as a share of the model's input range (0…1; [0, 1] if none)."""
    low, high = value_range or (0.0, 1.0)
    flat = inputs.reshape(len(inputs), -1).astype(np.float64)
    return np.clip((flat.mean(axis=1) - low) / ((high - low) or 1.0), 0.0, 1.0)


def _cumulative(values: np.ndarray) -> dict[str, float]:
    return {f"{bound:g}": float((values <= bound).mean()) for bound in BUCKETS}


def reference(probabilities: np.ndarray, inputs: np.ndarray, value_range: tuple[float, float] | None,
              split: str) -> Reference:
    """The Reference of a model's output rows on `inputs` (one row per image)."""
    top1 = probabilities.max(axis=1)
    shares = np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1]) / len(probabilities)
    intensity = mean_intensity(inputs, value_range)
    return Reference(split=split, images=len(probabilities), class_share=[float(s) for s in shares],
                     confidence_mean=float(top1.mean()), confidence_cumulative=_cumulative(top1),
                     input_mean_intensity=float(intensity.mean()), input_intensity_cumulative=_cumulative(intensity))
