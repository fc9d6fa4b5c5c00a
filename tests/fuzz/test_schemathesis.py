"""schemathesis against the real gunicorn server: requests generated from service/openapi.yaml.

Every operation of the spec, positive and negative cases, at least MIN_REQUESTS requests in all.
Each response must not be a 5xx, and its status, content type, headers and body must be the
ones the spec documents for that operation. Image bodies and binary tensors come from our own
strategies (tests/fuzz/strategies.py): schemathesis alone would only send noise.
"""
from __future__ import annotations

import json
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.harness import ROOT, start_server
from tests.fuzz.strategies import image_bytes, v2_json_bodies, v2_requests
from tests.tiny_model import publish_tiny

pytestmark = pytest.mark.slow  # fuzzing: 40 s

MIN_REQUESTS = 1_000
# Per operation, before schemathesis adds the spec's examples and its coverage cases.
EXAMPLES_PER_OPERATION = 100
TOKEN = "fuzz-admin-token"
FEEDBACK_TOKEN = "fuzz-feedback-token"
MODEL, SERVED_VERSION = "fashion-mnist", "2"
HEADER_LENGTH = "Inference-Header-Content-Length"
SENT: Counter[tuple[str, int]] = Counter()  # (operation, status) → responses; tests/fuzz/conftest.py prints it
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/tiff", "image/bmp")

for media_type in IMAGE_TYPES:  # any decoder may get any bytes, whatever the part's content type says
    schemathesis.openapi.media_type(media_type, image_bytes())
schemathesis.openapi.media_type("application/octet-stream", v2_requests(binary=True).map(lambda parts: parts[0]))

schema = schemathesis.openapi.from_path(ROOT / "service" / "openapi.yaml")


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Half the cases name the served model and version: random names and numbers only ever reach a 404."""
    served = {"name": MODEL, "version": SERVED_VERSION}
    if not isinstance(path_parameters, dict):
        return st.just(path_parameters)
    return st.fixed_dictionaries({key: st.sampled_from([value, served[key]]) if key in served else st.just(value)
                                  for key, value in path_parameters.items()})


@schema.hook
def flatmap_body(context, body):
    """Two JSON infer bodies in three are ours, half of them valid: schemathesis' own never match the shape, so
    without ours no request would get past the decoder to inference and the reply."""
    if context.operation.path.endswith("/infer") and isinstance(body, dict):
        return st.one_of(st.just(body), v2_json_bodies(), v2_json_bodies())
    return st.just(body)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Two versions of the tiny model (so load can pin one), the repository API on."""
    tmp = tmp_path_factory.mktemp("schemathesis")
    publish_tiny(tmp / "models", seed=0)
    publish_tiny(tmp / "models", seed=1)
    srv = start_server(tmp / "models", tmp, ADMIN_TOKEN=TOKEN, FEEDBACK_TOKEN=FEEDBACK_TOKEN)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sent():
    """Statuses received, by operation (printed at the end of the run); checked once every operation has run."""
    SENT.clear()
    yield SENT
    if len({label for label, _ in SENT}) == len(list(schema.get_all_operations())):
        total = sum(SENT.values())
        assert total >= MIN_REQUESTS, f"only {total} requests: raise EXAMPLES_PER_OPERATION"


def _json_length(body: bytes) -> int | None:
    """Where the JSON part of a binary-extension body ends (latin-1 keeps byte offsets), None if it has none."""
    try:
        return json.JSONDecoder().raw_decode(body.decode("latin-1"))[1]
    except ValueError:
        return None


def _prepare(case, count: int) -> None:
    """Credentials, and in positive cases a correct Inference-Header-Content-Length (schemathesis draws any integer)."""
    if "/repository/models/" in case.path and count % 2 == 0:  # every other admin call authenticated
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}
    if case.path == "/v1/feedback" and count % 2 == 0:  # every other label authenticated, so bodies are checked
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {FEEDBACK_TOKEN}"}
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE or not case.path.endswith("/infer"):
        return
    headers = {k: v for k, v in (case.headers or {}).items() if k != HEADER_LENGTH}
    length = _json_length(case.body) if isinstance(case.body, bytes) else None
    case.headers = headers | ({HEADER_LENGTH: str(length)} if length else {})


def _restore(server) -> None:
    """After a load or unload: serve the newest version again, unpinned, so no case sees another's leftovers."""
    response = requests.post(f"{server.url}/v2/repository/models/{MODEL}/load", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    response.raise_for_status()


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
def test_api_conforms_to_its_spec_and_never_answers_5xx(case, server, sent):
    label = case.operation.label
    _prepare(case, sum(n for (op, _), n in sent.items() if op == label))
    try:
        response = case.call(base_url=server.url, timeout=60)
        sent[label, response.status_code] += 1
        case.validate_response(response, checks=CHECKS)
    finally:
        if "/repository/models/" in case.path:
            _restore(server)
