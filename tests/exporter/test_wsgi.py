"""The WSGI glue: environ fields from h11 requests (PEP 3333), and one call of an app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import h11
import pytest

from exporter.web import CLIENT_CERT_OK
from exporter.wsgi import Peer, call, environ_for

PEER = Peer("10.0.0.7", "exporter.local", 9188)


def req(target: str, headers: list[tuple[str, str]] | None = None, method: str = "GET",
        version: str = "1.1") -> h11.Request:
    return h11.Request(method=method, target=target, http_version=version,
                       headers=[("Host", "exporter.local"), *(headers or [])])


def test_environ_fields() -> None:
    env = environ_for(req("/metrics%2Fx?name%5B%5D=a&b=1", [
        ("Accept", "text/plain"), ("X-Many", "1"), ("x-many", "2"),
        ("Content-Type", "text/x"), ("Content-Length", "0")], version="1.0"), PEER)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/metrics/x"  # decoded, as wsgiref does
    assert env["QUERY_STRING"] == "name%5B%5D=a&b=1"  # left encoded
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert (env["SERVER_NAME"], env["SERVER_PORT"], env["REMOTE_ADDR"]) == (
        "exporter.local", "9188", "10.0.0.7")
    assert env["HTTP_HOST"] == "exporter.local"
    assert env["HTTP_ACCEPT"] == "text/plain"
    assert env["HTTP_X_MANY"] == "1,2"  # repeated fields joined
    assert (env["CONTENT_TYPE"], env["CONTENT_LENGTH"]) == ("text/x", "0")
    assert "HTTP_CONTENT_TYPE" not in env
    assert env["wsgi.url_scheme"] == "http" and "HTTPS" not in env
    assert env["wsgi.input"].read() == b""
    assert env[CLIENT_CERT_OK] is True


def test_absolute_form_and_asterisk_targets() -> None:
    assert environ_for(req("http://exporter.local:9188/health/live?x=1"), PEER)["PATH_INFO"] == (
        "/health/live")
    assert environ_for(req("*", method="OPTIONS"), PEER)["PATH_INFO"] == "*"


def test_tls_and_the_client_certificate_verdict_reach_the_app() -> None:
    env = environ_for(req("/"), Peer("::1", "::", 9188, tls=True, client_cert_ok=False))
    assert env["wsgi.url_scheme"] == "https" and env["HTTPS"] == "on"
    assert env[CLIENT_CERT_OK] is False


def test_underscored_names_are_dropped() -> None:
    env = environ_for(req("/", [("X_Prometheus_Scrape_Timeout_Seconds", "1")]), PEER)
    assert "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS" not in env


class Closing:
    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield b"a"
        yield b"b"

    def close(self) -> None:
        self.closed = True


def test_call_collects_the_body_and_closes_the_iterable() -> None:
    body = Closing()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Closing:
        write = start_response("201 Created", [("X", "1")])
        write(b"0")  # the legacy write() callable comes first
        return body

    assert call(app, {}) == ("201 Created", [("X", "1")], b"0ab")
    assert body.closed


def test_exc_info_after_headers_reraises() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [])
        try:
            raise ValueError("late")
        except ValueError:
            import sys
            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b""]

    with pytest.raises(ValueError, match="late"):
        call(app, {})
