"""Which gunicorn settings our worker honours, a start-up check for the rest, and TLS.

The worker is built on gunicorn's documented extension point (`gunicorn.workers.base.Worker`)
and reads only documented settings. A setting that changes what gthread would do but that this
worker does not implement is refused at start-up with its name, never silently dropped (the
last worker dropped TLS that way: `--certfile` gave a server that answered nothing).
"""
from __future__ import annotations

import ssl

# Honoured: bind, backlog, workers, threads, worker_connections, keepalive, timeout,
# graceful_timeout, max_requests(_jitter), limit_request_line/fields/field_size, reuse_port,
# certfile, keyfile, ca_certs, cert_reqs, ciphers, ssl_context, and every server hook that
# gunicorn's master or base.Worker runs. These would change behaviour and are not implemented:
UNSUPPORTED = {
    "accesslog": "access logs are not written: Prometheus counts every request and status (GET /metrics)",
    "pre_request": "request hooks are not called: the worker does not build gunicorn's request objects",
    "post_request": "request hooks are not called: the worker does not build gunicorn's request objects",
    "http_protocols": "only HTTP/1.1 is served: put an HTTP/2 proxy in front",
    "http_parser": "requests are parsed by llhttp (httptools) only",
    "proxy_protocol": "the PROXY protocol is not read",
    "forwarded_allow_ips": "X-Forwarded-* headers are not read: wsgi.url_scheme comes from TLS alone",
    "secure_scheme_headers": "X-Forwarded-* headers are not read: wsgi.url_scheme comes from TLS alone",
    "permit_obsolete_folding": "llhttp refuses obsolete header folding",
    "strip_header_spaces": "llhttp refuses spaces before a header's colon",
    "permit_unconventional_http_method": "llhttp accepts only registered methods",
    "permit_unconventional_http_version": "only HTTP/1.0 and HTTP/1.1 are served",
    "casefold_http_method": "methods are taken as sent",
    "header_map": "header names with underscores are always dropped",
    "sendfile": "responses leave in one send() with their head; sendfile is never used",
}


class UnsupportedSetting(ValueError):
    """A gunicorn setting this worker would silently ignore."""


def check_config(cfg) -> None:
    """Raise UnsupportedSetting naming the first setting changed from its default that we don't honour."""
    for name, why in UNSUPPORTED.items():
        setting = cfg.settings.get(name)
        if setting is None:  # an older gunicorn without it: nothing to honour
            continue
        if name == "sendfile":
            changed = setting.get() is True  # None (the default) and False both mean no sendfile here
        else:
            changed = setting.get() != setting.validator(setting.default)  # e.g. "h1" is stored as ["h1"]
        if changed:
            raise UnsupportedSetting(f"gunicorn setting {name!r} is not supported by service.http.worker "
                                     f"(it is {setting.get()!r}): {why}")


def tls_context(cfg) -> ssl.SSLContext | None:
    """The server's TLS context from certfile/keyfile/ca_certs/cert_reqs/ciphers, through the ssl_context hook."""
    if not (cfg.certfile or cfg.keyfile):
        return None

    def default_context() -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=cfg.ca_certs)
        context.load_cert_chain(certfile=cfg.certfile, keyfile=cfg.keyfile)
        context.verify_mode = cfg.cert_reqs
        if cfg.ciphers:
            context.set_ciphers(cfg.ciphers)
        context.set_alpn_protocols(["http/1.1"])
        return context

    return cfg.ssl_context(cfg, default_context)
