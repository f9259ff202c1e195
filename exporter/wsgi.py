"""PEP 3333 glue: a WSGI environ from an h11 request, and one call of the app.

The server (:mod:`exporter.httpserver`) parses with h11 and hands a complete request here, in a
pool thread; what comes back is the status, the headers and the whole body, which the server
frames and sends. Our app's answers are small and made at once, so the body is collected rather
than streamed.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import h11

from exporter.web import CLIENT_CERT_OK

WSGIApp = Callable[..., Iterable[bytes]]


@dataclass(frozen=True)
class Peer:
    """What the server knows about the connection a request came on."""

    address: str
    server_name: str
    server_port: int
    tls: bool = False
    client_cert_ok: bool = True


def environ_for(request: h11.Request, peer: Peer) -> dict[str, Any]:
    target = request.target.decode("latin-1")
    if not target.startswith("/") and target != "*":
        parts = urlsplit(target)  # absolute form: GET http://host/metrics
        path, query = parts.path or "/", parts.query
    else:
        path, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method.decode("ascii"),
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(path, encoding="latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": peer.server_name,
        "SERVER_PORT": str(peer.server_port),
        "SERVER_PROTOCOL": "HTTP/" + request.http_version.decode("ascii"),
        "REMOTE_ADDR": peer.address,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https" if peer.tls else "http",
        "wsgi.input": io.BytesIO(b""),  # bodies are not read: such requests are answered 405
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        CLIENT_CERT_OK: peer.client_cert_ok,
    }
    if peer.tls:
        environ["HTTPS"] = "on"
    for raw_name, raw_value in request.headers:
        name = raw_name.decode("latin-1")
        if "_" in name:  # X_Foo would pose as X-Foo in the environ: dropped, as gunicorn does
            continue
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = raw_value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def call(app: WSGIApp, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run ``app`` once: its status line, headers and whole body."""
    answer: dict[str, Any] = {}
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None and answer:
            raise exc_info[1].with_traceback(exc_info[2])
        answer["status"], answer["headers"] = status, list(headers)
        return chunks.append

    result = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        closer = getattr(result, "close", None)
        if callable(closer):
            closer()
    return answer["status"], answer["headers"], b"".join(chunks)
