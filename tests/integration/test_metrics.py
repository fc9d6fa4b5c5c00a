"""Prometheus metrics: valid exposition format, and readable through a real Prometheus."""
import subprocess

import numpy as np
import pytest
import requests

from tests.prometheus import prometheus, query

pytestmark = pytest.mark.slow  # a server a test, with Prometheus: 18 s (request metrics are also tested in-process)


@pytest.fixture
def image(png) -> bytes:
    return png(np.zeros((28, 28), dtype=np.uint8))

EXPECTED = [
    "serving_requests_total", "serving_request_duration_seconds_bucket", "serving_inference_duration_seconds_bucket",
    "serving_queue_duration_seconds_bucket", "serving_inference_batch_size_bucket", "serving_images_total",
    "serving_requests_in_progress", "serving_model_info", "serving_model_load_failures_total",
]


def test_scrape_passes_promtool_and_has_every_metric(live_metrics_text, tmp_path):
    check = subprocess.run(["promtool", "check", "metrics"], input=live_metrics_text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    for name in EXPECTED:
        assert f"\n{name}" in live_metrics_text, name
    assert 'serving_model_info{model="fashion-mnist",provider="CPUExecutionProvider",version="1"} 1.0' in live_metrics_text


def test_every_series_of_a_served_model_exists_at_zero_from_start_up(server):
    # Before any request: dashboards and increase()/rate() alerts need the series to exist.
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    model = 'model="fashion-mnist"'
    for series in [  # nothing has been classified yet: each is there, at zero
        f'serving_inference_duration_seconds_count{{{model}}} 0.0',
        f'serving_queue_duration_seconds_count{{{model}}} 0.0',
        f'serving_inference_batch_size_count{{{model}}} 0.0',
        f'serving_request_duration_seconds_count{{api="v1",{model}}} 0.0',
        f'serving_requests_total{{api="v1",{model},status="200"}} 0.0',
        f'serving_model_load_failures_total{{{model}}} 0.0',
        f'serving_images_total{{{model},version="1"}} 0.0',
    ]:
        assert series in text, series
    # The launcher's readiness polls are v2 requests already.
    assert f'serving_request_duration_seconds_count{{api="v2",{model}}}' in text


def test_unknown_paths_are_counted_as_model_unknown(server):
    for path in ("/no/such/path", "/v2/models/no-such-model/infer", "/favicon-nope.ico"):
        requests.post(server.url + path, timeout=10)
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    assert 'serving_requests_total{api="other",model="unknown",status="404"} 2.0' in text
    assert 'serving_requests_total{api="v2",model="unknown",status="404"} 1.0' in text
    assert 'status="404"' not in "".join(line for line in text.splitlines() if 'model="fashion-mnist"' in line)


def test_counts_add_up_across_workers(server, image):
    for _ in range(20):
        requests.post(f"{server.url}/v1/classify", data=image, headers={"Content-Type": "image/png"}, timeout=10).raise_for_status()
    requests.post(f"{server.url}/v1/classify?top_k=0", data=image, headers={"Content-Type": "image/png"}, timeout=10)
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    assert 'serving_requests_total{api="v1",model="fashion-mnist",status="200"} 20.0' in text
    assert 'serving_requests_total{api="v1",model="fashion-mnist",status="400"} 1.0' in text
    assert 'serving_images_total{model="fashion-mnist",version="1"} 20.0' in text


def test_prometheus_scrapes_the_service(server, tmp_path, image):
    for _ in range(5):
        requests.post(f"{server.url}/v1/classify", data=image, headers={"Content-Type": "image/png"}, timeout=10).raise_for_status()
    with prometheus(tmp_path, [server.url.removeprefix("http://")]) as prom:
        result = query(prom, 'serving_requests_total{api="v1",status="200"}')
        assert result and float(result[0]["value"][1]) == 5.0
        info = query(prom, "serving_model_info == 1")
        assert {r["metric"]["version"] for r in info} == {"1"}
