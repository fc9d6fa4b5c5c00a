"""Request framing: the event loop hands a request to a thread exactly when its last byte is in."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.framing import Frame

HEAD = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n"


def _sized(body: bytes) -> bytes:
    return HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body


def _chunked(body: bytes, pieces: int, trailers: bytes = b"") -> bytes:
    size = max(1, len(body) // max(pieces, 1))
    chunks = [body[i:i + size] for i in range(0, len(body), size)]
    encoded = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks)
    return HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + encoded + b"0\r\n" + trailers + b"\r\n"


def _complete_at(request: bytes, cuts: list[int]) -> int | None:
    """Feed the request in pieces; the length fed when the frame first says complete."""
    frame, fed = Frame(max_head=65536, max_body=1 << 20), 0
    for end in sorted({*cuts, len(request)}):
        if end <= fed:
            continue
        done = frame.feed(request[fed:end])
        fed = end
        if done:
            return fed
    return None


requests_ = st.one_of(
    st.binary(max_size=3000).map(_sized),
    st.tuples(st.binary(min_size=1, max_size=3000), st.integers(1, 7)).map(lambda t: _chunked(*t)),
    st.just(_chunked(b"abc", 1, b"X-Checksum: 1\r\n")),
    st.just(HEAD + b"\r\n"),  # no body at all
)


@settings(max_examples=300, deadline=None)
@given(requests_, st.lists(st.integers(1, 6000), max_size=12))
def test_a_request_in_any_pieces_is_complete_exactly_at_its_last_byte(request, cuts):
    assert _complete_at(request, [c for c in cuts if c < len(request)]) == len(request)


def test_pipelined_bytes_after_a_request_stay_for_the_next():
    first, second = _sized(b"one"), _sized(b"two")
    frame = Frame(65536, 1 << 20)
    assert frame.feed(first + second[:10])
    assert frame.take() == first + second[:10]  # the parser reads the first; the rest is the next's start


@pytest.mark.parametrize("request_, oversized", [
    (HEAD + b"Content-Length: 2000000\r\n\r\n", True),  # declared too big: answered before the body comes
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"200000\r\n", True),  # a chunk past the limit
    (HEAD + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabc", False),  # handed over for the parser to refuse
    (HEAD + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", False),
    (HEAD + b"Content-Length: -1\r\n\r\n", False),
])
def test_odd_or_oversized_requests_are_handed_over_at_once(request_, oversized):
    frame = Frame(65536, 1 << 20)
    assert frame.feed(request_) and frame.oversized == oversized


def test_an_endless_head_is_handed_over_past_the_limit_and_100_continue_is_noticed():
    frame = Frame(max_head=100, max_body=1000)
    assert not frame.feed(HEAD + b"Expect: 100-continue\r\nContent-Length: 10\r\n\r\n") and frame.expects_continue
    endless = Frame(max_head=100, max_body=1000)
    assert not endless.feed(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 10)
    assert endless.feed(b"X: y\r\n" * 10)
