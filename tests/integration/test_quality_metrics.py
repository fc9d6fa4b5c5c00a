"""Drift and quality series: every one at zero from start-up, then counting what the model saw and said."""
from __future__ import annotations

import numpy as np
import requests

from tests.harness import start_server

MODEL = 'model="fashion-mnist"'


def test_quality_series_exist_at_zero_then_count_each_image(tiny_repo, tmp_path, png, metric):
    server = start_server(tiny_repo, tmp_path)
    try:
        scrape = requests.get(f"{server.url}/metrics", timeout=10).text
        for series in ('serving_predictions_total{class="Shirt",model="fashion-mnist",version="1"} 0.0',
                       'serving_prediction_confidence_count{model="fashion-mnist",version="1"} 0.0',
                       'serving_input_mean_intensity_count{model="fashion-mnist",version="1"} 0.0',
                       'serving_feedback_total{model="fashion-mnist",outcome="wrong",version="1"} 0.0',
                       'serving_capture_dropped_total{reason="queue_full"} 0.0',
                       'serving_reference_accuracy{model="fashion-mnist",version="1"}'):
            assert series in scrape, series
        image = png(np.full((28, 28), 255, np.uint8))  # inverted as a light background: all dark, intensity 0
        requests.post(f"{server.url}/v1/classify", data=image, headers={"Content-Type": "image/png"}, timeout=10).raise_for_status()
        assert metric(server.url, "serving_predictions_total") == 1
        assert metric(server.url, "serving_prediction_confidence_count") == 1
        assert metric(server.url, 'serving_input_mean_intensity_bucket{le="0.1",') == 1
    finally:
        server.stop()
