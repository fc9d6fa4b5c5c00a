"""Hypothesis raw byte streams against the real worker: the HTTP layer itself, fuzzed.

Each example is a connection: one or more requests, valid or mangled (chunk sizes with signs,
prefixes, underscores, spaces, huge or endless size lines, extensions, trailers, odd headers),
pipelined, and sent split at arbitrary bytes. Whatever comes, the server answers only 1xx, 2xx
or 4xx, each answer a complete response, the connection ends within the read timeout, and
health answers between examples.
"""
from __future__ import annotations

import re
import socket
import time

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import start_server
from tests.hostile_http import LYING_CHUNK_SIZES, MALFORMED
from tests.sockets import read_until_closed
from tests.tiny_model import publish_tiny

READ_TIMEOUT = 2.0
EXAMPLES = 250
STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")
PATHS = [b"/v1/classify", b"/v2/models/fashion-mnist/infer", b"/v2/health/ready", b"/v2/repository/models/fashion-mnist/load",
         b"/metrics", b"/nowhere", b"/v2/models/fashion-mnist", b"/%2e%2e/x?y=%zz"]
METHODS = [b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT", b"TRACE", b"PATCH", b"BREW", b"get"]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("http-fuzz")
    publish_tiny(tmp / "models")
    server = start_server(tmp / "models", tmp, WEB_CONCURRENCY="1", THREADS="4", REQUEST_READ_TIMEOUT=str(READ_TIMEOUT),
                          MAX_REQUEST_BYTES="65536", ADMIN_TOKEN="t")
    yield server
    server.stop()


header_tokens = st.sampled_from([b"Host", b"Content-Type", b"X-A", b"Accept", b"Connection", b"Expect", b"Authorization",
                                 b"Transfer-Encoding", b"Content-Length", b"X_Under", b"X-A ", b" X-A", b"\x00", b"X:Y"])
header_values = st.one_of(st.sampled_from([b"x", b"close", b"keep-alive", b"100-continue", b"chunked", b"gzip, chunked",
                                           b"application/json", b"image/png", b"Bearer t", b"5", b"-1", b"1e3", b""]),
                          st.binary(max_size=40))
chunk_sizes = st.one_of(st.sampled_from(LYING_CHUNK_SIZES), st.integers(0, 40).map(lambda n: b"%x" % n),
                        st.integers(0, 40).map(lambda n: b"%X;ext=%d" % (n, n)), st.binary(max_size=12))


@st.composite
def chunked_body(draw) -> bytes:
    chunks = draw(st.lists(st.tuples(chunk_sizes, st.binary(max_size=40)), max_size=4))
    body = b"".join(size + b"\r\n" + data + draw(st.sampled_from([b"\r\n", b"\n", b"", b"XX"])) for size, data in chunks)
    trailers = draw(st.sampled_from([b"", b"X-T: 1\r\n", b"X-T: 1\n", b"bad trailer\r\n"]))
    return body + draw(st.sampled_from([b"0\r\n", b"0;e=1\r\n", b"-0\r\n", b""])) + trailers + b"\r\n"


@st.composite
def request_bytes(draw) -> bytes:
    method, path = draw(st.sampled_from(METHODS)), draw(st.sampled_from(PATHS))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.1", b"HTTP/2.0", b"HTTP/1.1 ", b"http/1.1"]))
    headers = draw(st.lists(st.tuples(header_tokens, header_values), max_size=5))
    head = method + b" " + path + b" " + version + b"\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in headers)
    framing = draw(st.sampled_from(["none", "length", "chunked", "both"]))
    body = draw(st.binary(max_size=200)) if framing != "chunked" else draw(chunked_body())
    if framing in ("length", "both"):
        head += b"Content-Length: %d\r\n" % draw(st.sampled_from([len(body), len(body) + 1, max(0, len(body) - 1)]))
    if framing in ("chunked", "both"):
        head += b"Transfer-Encoding: chunked\r\n"
    return head + b"\r\n" + (body if framing != "none" else b"")


streams = st.one_of(
    st.lists(request_bytes(), min_size=1, max_size=4).map(b"".join),
    st.sampled_from(list(MALFORMED.values())),
    st.binary(max_size=300),
)


def _exchange(port: int, data: bytes, cuts: list[int]) -> bytes:
    """Send `data` split at `cuts`, close our side, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT + 5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = 0
        try:
            for end in sorted({*cuts, len(data)}):
                if end > sent:
                    s.sendall(data[sent:end])
                    sent = end
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server refused and closed mid-stream: what it answered is still to be read
        return read_until_closed(s)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=streams, cut_data=st.data())
def test_any_byte_stream_gets_only_4xx_or_success_and_never_hangs(fuzz_server, data, cut_data):
    cuts = cut_data.draw(st.lists(st.integers(0, len(data)), max_size=6))
    started = time.monotonic()
    answer = _exchange(fuzz_server.port, data, cuts)  # a hang raises TimeoutError: READ_TIMEOUT + 5 s
    statuses = [int(code) for code in STATUS.findall(answer)]
    assert all(code < 500 or code == 505 for code in statuses), (data, answer[:500])
    assert time.monotonic() - started < READ_TIMEOUT + 5
    assert requests.get(f"{fuzz_server.url}/v2/health/live", timeout=2).status_code == 200


def test_every_split_of_a_chunked_request_gets_the_same_answer(fuzz_server, png):
    import numpy as np

    image = png(np.zeros((28, 28), np.uint8))
    request = (b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: close\r\n\r\n" + b"%x;e=1\r\n%s\r\n" % (len(image), image) + b"0\r\nX-T: 1\r\n\r\n")
    for cut in range(1, len(request), 7):  # every 7th byte: each part of the framing is cut somewhere
        answer = _exchange(fuzz_server.port, request, [cut])
        assert STATUS.findall(answer) == [b"200"], (cut, answer[:300])
