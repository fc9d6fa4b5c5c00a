"""Every hostile image of tests/hostile_images.py, posted to the real server: a 200 or a JSON 4xx, never a 5xx.

Bombs just under the pixel caps must be classified, bombs over them refused with a 4xx, and no
image may crash or hang a worker: the workers after each request are the ones from before it.
"""
from __future__ import annotations

import pytest
import requests

from service.settings import Settings
from tests.harness import start_server
from tests.hostile_images import DEFAULT_MAX_IMAGE_PIXELS, specs
from tests.tiny_model import publish_tiny

# The caps of a default server (settings once they exist there, else today's constant).
_DEFAULTS = Settings()
MAX_IMAGE_PIXELS = getattr(_DEFAULTS, "max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS)
MAX_REQUEST_PIXELS = getattr(_DEFAULTS, "max_request_pixels", None)
# A bomb under the caps may take seconds of decoding on a loaded CI machine today; none may take minutes.
TIMEOUT = 120


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    publish_tiny(tmp / "models")
    srv = start_server(tmp / "models", tmp)
    yield srv
    srv.stop()


@pytest.mark.parametrize("spec", specs(MAX_IMAGE_PIXELS, MAX_REQUEST_PIXELS), ids=lambda spec: spec.name)
def test_hostile_image_gets_a_200_or_a_json_4xx(server, spec):
    item = spec.item()
    workers, booted = server.workers(), server.output().count("Booting worker")
    files = [("image", (f"{item.name}.{spec.suffix}", item.data)) for _ in range(item.copies)]

    response = requests.post(f"{server.url}/v1/classify", files=files, timeout=TIMEOUT)

    assert response.status_code < 500, f"{item.name}: {response.status_code} {response.text[:300]}"
    assert f"{response.status_code // 100}xx" in item.expected, f"{item.name}: {response.status_code} {response.text[:300]}"
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    if response.status_code == 200:
        assert len(body["results"]) == item.copies
    else:
        assert body["error"]
    assert server.workers() == workers and server.output().count("Booting worker") == booted, "a worker restarted"
