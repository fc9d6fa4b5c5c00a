"""Hostile HTTP/1.1 byte streams: the parser's unit tests, the attacks on the real worker, the HTTP
fuzzer and benchmarks/http_attacks.py all use these, so each class is attacked the same way."""

HEAD = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n"


def chunked_with_size(size: bytes, path: bytes = b"/v2/models/m/infer") -> bytes:
    """A chunked request whose first chunk size line is `size`."""
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + size + b"\r\nabcde\r\n0\r\n\r\n")


# Every way a chunk size can lie; the last round's framer looped forever on the negative ones
# and answered 500 to the rest.
LYING_CHUNK_SIZES = [b"-6", b"-1", b"-0", b"+5", b"0x5", b"5_", b"_5", b" 5", b"5 ", b"\t5", b"zz", b"5e-1", b"", b"1" * 40]


MALFORMED = {
    "chunk-missing-crlf": HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcdeXX0\r\n\r\n",
    "chunk-extension-unclosed-quote": HEAD + b"Transfer-Encoding: chunked\r\n\r\n5;a=\"b\r\nabcde\r\n0\r\n\r\n",
    "trailer-bare-lf": HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\nX: y\n\r\n",
    "space-before-colon": b"POST / HTTP/1.1\r\nHost : x\r\n\r\n",
    "xchunked": HEAD + b"Transfer-Encoding: xchunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n",
    "content-length-and-chunked": HEAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two-content-lengths": HEAD + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\na",
    "obs-fold": b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
    "bare-lf-head": b"GET / HTTP/1.1\nHost: x\n\n",
    "not-http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "nul-in-header": b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    # URLs llhttp takes whole but that name no path: refused by the parser, never a thread's exception
    "absolute-url-without-host": b"GET http:// HTTP/1.1\r\nHost: x\r\n\r\n",
    "url-port-out-of-range": b"GET http://h:99999/v2 HTTP/1.1\r\nHost: x\r\n\r\n",
    "url-unclosed-ipv6": b"GET http://[::1 HTTP/1.1\r\nHost: x\r\n\r\n",
}


# gunicorn answered these in HTML last round; each is the JSON error now, with its status.
OVER_LIMITS = {
    "long-url": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "101-headers": (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
    "huge-header": (b"GET / HTTP/1.1\r\nX: " + b"y" * 9000 + b"\r\n\r\n", 431),
    "http-3": (b"GET / HTTP/3.0\r\n\r\n", 505),
    "http-2-preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    "declared-body-too-large": (HEAD + b"Content-Length: 99999999\r\n\r\n", 413),
}

# Bodies that made the JSON nesting check quadratic: more than 32 brackets (the cheap count that
# ends most checks), then an unclosed string of escaped quotes, where the regex restarted at each.
REGEX_HOSTILE_JSON = {
    "escaped-quotes": b"[" * 40 + b'{"id":"' + b'\\"' * 100_000,
    "escaped-backslashes-and-quotes": b'{"inputs":' + b"[" * 40 + b'"' + b'\\\\\\"' * 60_000,
    "brackets-then-escapes": b"[" * 40 + b'"' + b'\\"[' * 80_000,
}
