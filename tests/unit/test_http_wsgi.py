"""The WSGI bridge: whatever the app does wrong, the client gets a complete JSON 500, never a dropped connection."""
import orjson
import pytest

from service.http import wsgi
from service.http.parser import Request

REQUEST = Request(method="GET", url=b"/x", path="/x", query="", version="1.1", headers=[], body=b"", keep_alive=True)


def _app_setting(headers):
    def app(environ, start_response):
        start_response("200 OK", headers)
        return [b"{}"]
    return app


def _raising(environ, start_response):
    raise RuntimeError("a bug")


def _silent(environ, start_response):
    return [b"never started"]


@pytest.mark.parametrize("app", [_app_setting([("X-Id", "\u0100")]), _raising, _silent], ids=["non-latin-1-header", "raises", "no-start"])
def test_an_app_bug_is_a_json_500_that_closes_the_connection(app):
    env = wsgi.environ(REQUEST, wsgi.Site(("127.0.0.1", 8000), "http"), ("127.0.0.1", 5000))
    data, keep = wsgi.respond(app, env, REQUEST, keep_alive=True)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ") and b"Connection: close" in head and not keep
    assert orjson.loads(body) == {"error": "internal server error"}


def test_a_head_request_gets_the_headers_without_the_body():
    request = Request(method="HEAD", url=b"/x", path="/x", query="", version="1.1", headers=[], body=b"", keep_alive=True)
    env = wsgi.environ(request, wsgi.Site(("127.0.0.1", 8000), "http"), ("127.0.0.1", 5000))
    data, keep = wsgi.respond(_app_setting([("Content-Type", "application/json")]), env, request, keep_alive=True)
    assert data.endswith(b"\r\n\r\n") and keep
