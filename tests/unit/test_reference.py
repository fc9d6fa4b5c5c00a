"""The drift reference: computed from output rows and inputs, optional in metadata, present in the shipped versions."""
from __future__ import annotations

import numpy as np

from modelrepo.reference import BUCKETS, mean_intensity, reference
from modelrepo.schema import Metadata
from tests.harness import ROOT
from tests.tiny_model import tiny_metadata


def test_reference_counts_classes_confidence_and_intensity():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]], np.float32)
    inputs = np.stack([np.full((28, 28, 1), v, np.float32) for v in (0.0, 0.5, 1.0, 0.5)])
    ref = reference(probabilities, inputs, (0.0, 1.0), "synthetic")
    assert ref.class_share == [0.75, 0.25] and ref.images == 4
    assert abs(ref.confidence_mean - 0.75) < 1e-6 and ref.confidence_cumulative["0.6"] == 0.25
    assert ref.input_mean_intensity == 0.5 and list(ref.confidence_cumulative) == [f"{b:g}" for b in BUCKETS]
    assert mean_intensity(inputs * 255, (0.0, 255.0)).tolist() == [0.0, 0.5, 1.0, 0.5]


def test_metadata_without_a_reference_still_loads():
    raw = tiny_metadata(accuracy=None).model_dump(mode="json")
    assert "reference" not in {k for k, v in raw.items() if v is not None}
    assert Metadata.model_validate(raw).reference is None


def test_every_shipped_version_carries_its_reference():
    for path in sorted((ROOT / "models").glob("*/*/metadata.json")):
        ref = Metadata.model_validate_json(path.read_text()).reference
        assert ref is not None and ref.images == 10_000 and abs(sum(ref.class_share) - 1) < 1e-6, path
        assert 0.8 < ref.confidence_mean < 1 and 0.2 < ref.input_mean_intensity < 0.4, path
