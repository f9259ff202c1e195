"""The HTTP face: ``/metrics``, a landing page, and health endpoints for container probes.

Exposition (text or OpenMetrics by ``Accept``, gzip by ``Accept-Encoding``) is done by
prometheus_client's own encoders, exactly as its ``make_wsgi_app`` does. TLS, client
certificates, basic auth and security headers come from an optional exporter-toolkit web config
(:mod:`exporter.webconfig`).
"""

from __future__ import annotations

import contextlib
import html
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog

from exporter import __version__
from exporter.collector import Deadline
from exporter.scrape import Scraper
from exporter.web import (
    CLIENT_CERT_OK,
    HANDSHAKE_TIMEOUT_SECONDS,
    WebConfigGate,
    WebConfigSource,
)

log = structlog.get_logger(__name__)

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


class ExporterApp:
    """The WSGI application. ``required`` names collectors whose failure makes us unready."""

    def __init__(self, scraper: Scraper, required: Iterable[str] = ()) -> None:
        self.scraper = scraper
        self.required = set(required)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self._route(environ, start_response)
        except Exception:
            # Logged by us (JSON, secrets masked), not printed raw to stderr by wsgiref.
            log.exception("request failed", path=str(environ.get("PATH_INFO", "")))
            return self._respond(start_response, "500 Internal Server Error",
                                 "text/plain; charset=utf-8", b"Internal Server Error\n")

    def _route(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return self._metrics(environ, start_response)
        if path == "/":
            return self._respond(start_response, "200 OK", "text/html; charset=utf-8",
                                 self._landing().encode())
        if path == "/health/live":
            return self._json(start_response, 200, {"status": "ok"})
        if path == "/health/ready":
            return self._ready(start_response)
        return self._respond(start_response, "404 Not Found", "text/plain; charset=utf-8",
                             b"Not Found\n")

    def _metrics(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        header = environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")
        try:
            header_timeout = float(header) if header else None
        except ValueError:
            header_timeout = None
        output = self.scraper.scrape_shared(self.scraper.deadline_for(header_timeout))
        gzipped = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
        body, content_type = output.encode(environ.get("HTTP_ACCEPT", ""), gzipped)
        headers = [("Content-Type", content_type)]
        if gzipped:
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def _ready(self, start_response: StartResponse) -> Iterable[bytes]:
        results = self.scraper.last_results()
        if any(r is None for r in results.values()):
            self.scraper.scrape(Deadline.after(min(self.scraper.scrape_timeout, 5.0)))
            results = self.scraper.last_results()
        deps = {
            name: {
                "ok": r is not None and r.ok,
                "required": name in self.required,
                "reason": None if r is None or r.ok else str(r.reason),
            }
            for name, r in results.items()
        }
        ready = all(d["ok"] for d in deps.values() if d["required"])
        return self._json(start_response, 200 if ready else 503,
                          {"status": "ready" if ready else "unready", "dependencies": deps})

    def _landing(self) -> str:
        rows = []
        now = time.time()
        for name, r in self.scraper.last_results().items():
            if r is None:
                rows.append(f"<tr><td>{html.escape(name)}</td><td>not run yet</td>"
                            "<td></td><td></td><td></td></tr>")
                continue
            state = "ok" if r.ok else "failed"
            reason = "" if r.ok else f"{r.reason}: {r.message}"
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td class={state}>{state}</td>"
                f"<td>{html.escape(reason)}</td><td>{r.duration:.3f} s</td>"
                f"<td>{now - r.finished_at:.0f} s ago</td></tr>"
            )
        return (
            "<!DOCTYPE html><html><head><meta charset=utf-8>"
            "<title>customer-sync-exporter</title><style>"
            "body{font-family:sans-serif;margin:2em}td,th{padding:.2em .8em;text-align:left}"
            ".ok{color:#070}.failed{color:#b00}</style></head><body>"
            f"<h1>customer-sync-exporter {html.escape(__version__)}</h1>"
            '<p><a href="/metrics">Metrics</a> · <a href="/health/live">Liveness</a> · '
            '<a href="/health/ready">Readiness</a></p>'
            "<h2>Collectors (last run)</h2><table><tr><th>collector</th><th>state</th>"
            "<th>reason</th><th>duration</th><th>age</th></tr>"
            + "".join(rows)
            + "</table></body></html>"
        )

    @staticmethod
    def _json(start_response: StartResponse, status: int, payload: object) -> Iterable[bytes]:
        text = {200: "200 OK", 503: "503 Service Unavailable"}[status]
        return ExporterApp._respond(start_response, text, "application/json",
                                    json.dumps(payload).encode())

    @staticmethod
    def _respond(start_response: StartResponse, status: str, content_type: str,
                 body: bytes) -> Iterable[bytes]:
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]


# --- server -----------------------------------------------------------------------------------


def parse_listen_address(address: str) -> tuple[str, int]:
    """``:9188``, ``127.0.0.1:9188`` or ``[::1]:9188`` to (host, port); '' means every address."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid listen address {address!r}: use [host]:port, e.g. ':9188'")
    return host.strip("[]"), int(port)


HEALTH_PATHS = frozenset({"/health/live", "/health/ready"})


@dataclass(frozen=True)
class _Connection:
    tls: bool = False
    client_cert_ok: bool = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        conn = getattr(self.server, "connection", _Connection)()
        if conn.tls:
            environ["HTTPS"] = "on"  # wsgi.url_scheme becomes https
        environ[CLIENT_CERT_OK] = conn.client_cert_ok
        return environ


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """Threaded WSGI server; with a web config, each new connection gets the TLS context in force
    at accept time, and its handshake runs in the connection's own thread."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver listens with a backlog of 5: a burst of scrapers and probes overflows it, the
    # kernel drops their SYNs and each retries a second later (late scrapes). Go servers use
    # somaxconn; the kernel caps this at net.core.somaxconn anyway.
    request_queue_size = 1024
    web: WebConfigSource | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()

    @property
    def tls_enabled(self) -> bool:
        return self.web is not None and self.web.tls_enabled

    def connection(self) -> _Connection:
        """What the TLS layer established for the connection this thread is serving."""
        conn: _Connection = getattr(self._local, "conn", _Connection())
        return conn

    def finish_request(self, request: Any, client_address: Any) -> None:
        settings = self.web.current() if self.web is not None else None
        if settings is None or settings.tls is None:
            self._local.conn = _Connection()
            super().finish_request(request, client_address)
            return
        try:
            request.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
            conn = settings.tls.wrap_socket(request, server_side=True)
            conn.settimeout(None)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            log.debug("TLS handshake failed", client=str(client_address[0]), error=str(exc))
            return
        try:
            cert_ok = settings.client_cert_ok(conn)
            if not cert_ok and not (self.web is not None and self.web.health_without_auth):
                log.debug("client certificate not allowed", client=str(client_address[0]))
                return
            self._local.conn = _Connection(tls=True, client_cert_ok=cert_ok)
            super().finish_request(conn, client_address)
        finally:
            self._local.conn = _Connection()
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)
            conn.close()


class _DualStackServer(_ThreadingServer):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class _IPv6Server(_ThreadingServer):
    address_family = socket.AF_INET6


def make_http_server(
    address: str,
    app: Callable[..., Any],
    *,
    web_config_file: str | Path | None = None,
    health_without_auth: bool = False,
) -> WSGIServer:
    """Bind ``address``. With ``web_config_file`` (exporter-toolkit format), serve TLS and/or
    basic auth as it says; raises :class:`WebConfigError` when that file is unusable.
    ``health_without_auth`` keeps ``/health/live`` and ``/health/ready`` open for probes."""
    web = None
    if web_config_file is not None:
        web = WebConfigSource(web_config_file, health_without_auth=health_without_auth)
        app = WebConfigGate(app, web, HEALTH_PATHS if health_without_auth else ())
    server = _bind(address, app)
    server.web = web
    return server


def _bind(address: str, app: Callable[..., Any]) -> _ThreadingServer:
    host, port = parse_listen_address(address)
    if host == "":
        try:
            return make_server("::", port, app, _DualStackServer, _QuietHandler)
        except OSError:
            host = "0.0.0.0"
    server_class = _IPv6Server if ":" in host else _ThreadingServer
    return make_server(host, port, app, server_class, _QuietHandler)


def serve_in_thread(server: WSGIServer, poll_interval: float = 0.5) -> threading.Thread:
    """Serve in a daemon thread; ``shutdown()`` returns within ``poll_interval``."""
    thread = threading.Thread(target=server.serve_forever, args=(poll_interval,), name="http",
                              daemon=True)
    thread.start()
    return thread
