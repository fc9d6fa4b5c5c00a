"""The HTTP parser (llhttp through service/http/parser.py): requests complete exactly at their last
byte however they are split, every framing lie is refused, and every limit holds as bytes arrive."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.http.parser import FRAMING_FACTOR, Limits, Refusal, Request, RequestReader
from service.protocol import MAX_JSON_DEPTH, json_depth
from tests.hostile_http import HEAD, LYING_CHUNK_SIZES, MALFORMED

LIMITS = Limits(url=8190, fields=100, field=8190, head=64 * 1024, body=1 << 20)


def _sized(body: bytes) -> bytes:
    return HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body


def _chunked(body: bytes, pieces: int, trailers: bytes = b"") -> bytes:
    size = max(1, len(body) // max(pieces, 1))
    chunks = [body[i:i + size] for i in range(0, len(body), size)]
    encoded = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks)
    return HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + encoded + b"0\r\n" + trailers + b"\r\n"


def _feed(data: bytes, cuts=(), limits: Limits = LIMITS) -> tuple[list, int | None]:
    """Feed in pieces: everything completed, and how many bytes were in when the first item came."""
    reader, done, fed, first = RequestReader(limits), [], 0, None
    for end in sorted({*cuts, len(data)}):
        if end <= fed:
            continue
        done += reader.feed(data[fed:end])
        fed = end
        if done and first is None:
            first = fed
    return done, first


requests_ = st.one_of(
    st.binary(max_size=3000).map(_sized),
    st.tuples(st.binary(min_size=1, max_size=3000), st.integers(1, 7)).map(lambda t: _chunked(*t)),
    st.just(_chunked(b"abc", 1, b"X-Checksum: 1\r\n")),
    st.just(HEAD + b"\r\n"),
)


@settings(max_examples=300, deadline=None)
@given(request=requests_, data=st.data())
def test_a_request_fed_in_any_pieces_completes_exactly_at_its_last_byte(request, data):
    cuts = data.draw(st.lists(st.integers(0, len(request)), max_size=12))
    done, first = _feed(request, cuts)
    assert first == len(request)
    assert len(done) == 1 and isinstance(done[0], Request)


@pytest.mark.parametrize("request_bytes", [_sized(b'{"inputs": []}'), _chunked(b"x" * 40, 3, b"T: 1\r\n")], ids=["sized", "chunked"])
def test_split_at_every_byte_and_one_byte_at_a_time(request_bytes):
    for cut in range(1, len(request_bytes)):
        done, first = _feed(request_bytes, [cut])
        assert first == len(request_bytes) and isinstance(done[0], Request), cut
    done, first = _feed(request_bytes, range(len(request_bytes)))
    assert first == len(request_bytes) and len(done) == 1


def test_a_pipelined_flood_is_not_taken_for_one_long_head():
    flood = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n" * 20_000
    done, _ = _feed(flood, range(0, len(flood), 256 * 1024))
    assert len(done) == 20_000 and all(isinstance(d, Request) for d in done)


def test_pipelined_requests_come_out_in_order_with_their_bodies():
    stream = _sized(b"one") + _chunked(b"two", 2) + b"GET /v2/health/live HTTP/1.0\r\n\r\n"
    done, _ = _feed(stream)
    assert [(r.method, r.body, r.keep_alive) for r in done] == [("POST", b"one", True), ("POST", b"two", True), ("GET", b"", False)]


@pytest.mark.parametrize("size", LYING_CHUNK_SIZES, ids=lambda s: repr(s)[2:-1] or "empty")
@pytest.mark.parametrize("behind_a_valid_request", [False, True], ids=["first", "pipelined"])
def test_every_lying_chunk_size_is_refused_with_400(size, behind_a_valid_request):
    lie = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + size + b"\r\nabcde\r\n0\r\n\r\n"
    done, _ = _feed((_sized(b"ok") if behind_a_valid_request else b"") + lie)
    assert isinstance(done[-1], Refusal) and done[-1].status == 400, done
    assert len(done) == 1 + behind_a_valid_request


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_framing_is_refused_with_400(request_bytes):
    done, _ = _feed(request_bytes)
    assert [(type(d), d.status) for d in done] == [(Refusal, 400)], done


@pytest.mark.parametrize("request_bytes, status, says", [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414, "URL over"),
    (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431, "more than 100 header fields"),
    (b"GET / HTTP/1.1\r\nX: " + b"y" * 9000 + b"\r\n\r\n", 431, "header field"),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X%d: " % i + b"y" * 8000 + b"\r\n" for i in range(12)), 431, "request head over"),
    (HEAD + b"Content-Length: 9999999\r\n\r\n", 413, "MAX_REQUEST_BYTES"),
    (b"GET / HTTP/3.0\r\n\r\n", 505, "HTTP/3.0"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "HTTP/2"),
])
def test_limits_and_versions_get_their_status(request_bytes, status, says):
    done, _ = _feed(request_bytes)
    assert [(type(d), d.status) for d in done] == [(Refusal, status)]
    assert says in done[0].message


def test_a_declared_body_over_the_limit_is_refused_before_any_of_it_arrives():
    done, first = _feed(HEAD + b"Content-Length: 2000000\r\n\r\n")
    assert done[0].status == 413 and first is not None


def test_a_chunked_body_is_refused_once_its_decoded_size_passes_the_limit():
    reader, chunk = RequestReader(LIMITS), b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
    done = reader.feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
    fed = 0
    while not done:
        done = reader.feed(chunk)
        fed += 65536
    assert done[0].status == 413 and fed <= LIMITS.body + 65536


@pytest.mark.parametrize("endless", [b"5;" + b"e" * 64, b"0" * 64], ids=["extension", "leading-zeros"])
def test_an_endless_chunk_size_line_is_refused_not_streamed(endless):
    """The last framer buffered a size line that never ended: 66 MiB on one connection, then a 500."""
    reader = RequestReader(LIMITS)
    done = reader.feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n5;")
    fed = 0
    while not done and fed < 2 * FRAMING_FACTOR * LIMITS.body:
        done = reader.feed(endless * 1024)
        fed += len(endless) * 1024
    assert done and done[0].status in (400, 413), fed
    assert reader.buffered == 0  # nothing of it is held


def test_expect_100_continue_is_noticed_and_ends_with_its_request():
    reader = RequestReader(LIMITS)
    assert reader.feed(HEAD + b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n") == []
    assert reader.expects_continue and reader.started is not None
    assert isinstance(reader.feed(b"ok")[0], Request)
    assert not reader.expects_continue and reader.started is None


# -- the JSON nesting check: linear, and right about strings ---------------------------------------
json_values = st.recursive(
    st.one_of(st.integers(), st.text(alphabet='[]{}"\\ab', max_size=8), st.none()),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=4), children, max_size=3),
    max_leaves=60,
)


def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(value=json_values, padding=st.integers(0, MAX_JSON_DEPTH + 2))
def test_json_depth_is_exact_above_the_limit_whatever_the_strings_hold(value, padding):
    # Brackets in strings (escaped quotes included) never count; the padding takes it over the limit.
    raw = b"[" * padding + json.dumps(value).encode() + b"]" * padding
    measured = json_depth(raw)
    assert measured >= padding + _depth(value) if measured <= MAX_JSON_DEPTH else measured == padding + _depth(value)


@pytest.mark.parametrize("hostile, depth", [
    (b'{"id":"' + b'\\"' * 100_000, 1),  # an unclosed string of escaped quotes: the regex restarted at each
    (b'{"id":"' + b'\\\\\\"[' * 50_000 + b'"}', 1),
    (b'[' * 40 + b'"' + b'\\"[' * 100_000, 40),
])
def test_json_depth_handles_regex_hostile_bodies(hostile, depth):
    # Linear: these finish at once; the quadratic regex took minutes at this size.
    assert json_depth(hostile) == depth


@pytest.mark.parametrize("body, objects", [
    (b'{"inputs": [' + b'{"name": "a"},' * 2000 + b'{}]}', 2002),
    (b'{"id": "' + b'{' * 5000 + b'", "inputs": [{}]}', 2),  # braces in a string are not objects
    (b'[' * 40 + b'{}' + b']' * 40, 1),
])
def test_json_objects_are_counted_outside_strings(body, objects):
    from service.protocol import json_structure

    assert json_structure(body)[1] == objects
