"""The HTTP face: ``/metrics`` (or ``--web.telemetry-path``), a landing page, and health
endpoints for container probes.

Each request that needs the collectors leases the live pipeline (:mod:`exporter.live`) and
makes its whole answer inside the lease, so a config reload never closes a pipeline under a
request. ``/health/ready`` answers from the last results while they are fresh, else it joins the
shared scrape (single-flight, like ``/metrics``) or leads one.

Exposition is done by prometheus_client's own encoders; which format (text or OpenMetrics, by
``Accept``) and whether gzip (by ``Accept-Encoding``) is decided by :mod:`exporter.negotiate`,
q-values honoured. Every path answers ``GET`` and ``HEAD``; ``OPTIONS`` answers ``200`` with
``Allow`` (as client_python's ``make_wsgi_app`` does); any other method, ``POST`` and a lowercase
``get`` included (methods are case-sensitive, RFC 9110 §9.1), gets ``405`` with ``Allow``.

``HEAD /metrics`` is cheap: it answers the headers a ``GET`` would get (Content-Type, and
Content-Encoding when gzip was negotiated) without running a scrape, so without Content-Length,
which only the scrape could tell (RFC 9110 §9.3.2 lets a server omit it). ``HEAD`` on the other
paths is their ``GET`` without the body.

TLS, client certificates, basic auth and security headers come from an optional exporter-toolkit
web config (:mod:`exporter.web`); the server itself, its timeouts and its limits are in
:mod:`exporter.httpserver`.
"""

from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import structlog

from exporter import __version__
from exporter.collector import Deadline
from exporter.httpserver import ConnectionStats, HTTPServer, Limits, bind_all
from exporter.live import Lease, Live
from exporter.negotiate import choose_format, gzip_accepted
from exporter.pipeline import Pipeline
from exporter.scrape import Scraper
from exporter.web import WebConfigGate, WebConfigSource

log = structlog.get_logger(__name__)

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

HEALTH_PATHS = frozenset({"/health/live", "/health/ready"})
RESERVED_PATHS = frozenset({"/", *HEALTH_PATHS})
ALLOW = "GET, HEAD, OPTIONS"
# Readiness answers from the last results while every collector has one this recent; else it
# joins the shared scrape (or leads one, within READY_DEADLINE_SECONDS).
READY_MAX_AGE_SECONDS = 30.0
READY_DEADLINE_SECONDS = 5.0


def check_telemetry_path(path: str) -> str:
    """``path`` if the metrics can be served there: a path, and not one of the others."""
    if path in RESERVED_PATHS or not path.startswith("/"):
        raise ValueError(f"invalid telemetry path {path!r}: it must begin with / and not be "
                         f"one of {', '.join(sorted(RESERVED_PATHS))}")
    return path


class ExporterApp:
    """The WSGI application over the live pipeline (:mod:`exporter.live`)."""

    def __init__(self, live: Live | Scraper, required: Iterable[str] = (), *,
                 telemetry_path: str = "/metrics",
                 ready_max_age: float = READY_MAX_AGE_SECONDS) -> None:
        """``live`` is what a reload swaps. A bare :class:`Scraper` (tests, embedding) is served
        as a fixed pipeline whose ``required`` collectors fail readiness. ``telemetry_path`` is
        where the exposition is (``--web.telemetry-path``)."""
        check_telemetry_path(telemetry_path)
        self.live = live if isinstance(live, Live) else Live(Pipeline(live, required=required))
        self.telemetry_path = telemetry_path
        self.paths = frozenset({telemetry_path, *RESERVED_PATHS})
        self.ready_max_age = ready_max_age

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self._route(environ, start_response)
        except Exception:
            # Logged by us (JSON, secrets masked), with the path, then answered 500.
            log.exception("request failed", path=str(environ.get("PATH_INFO", "")))
            return self._respond(start_response, "500 Internal Server Error",
                                 "text/plain; charset=utf-8", b"Internal Server Error\n")

    def _route(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if path not in self.paths and not (path == "*" and method == "OPTIONS"):
            return self._respond(start_response, "404 Not Found", "text/plain; charset=utf-8",
                                 b"Not Found\n")
        if method == "OPTIONS":
            start_response("200 OK", [("Allow", ALLOW), ("Content-Length", "0")])
            return [b""]
        if method not in ("GET", "HEAD"):
            body = f"Method Not Allowed: {ALLOW} only\n".encode()
            start_response("405 Method Not Allowed", [
                ("Allow", ALLOW), ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
            ])
            return [body]
        if path == "/health/live":
            return self._json(start_response, 200, {"status": "ok"})
        with self.live.lease() as lease:  # the whole answer is made inside: see exporter.wsgi
            if path == self.telemetry_path:
                return self._metrics(lease, environ, start_response)
            if path == "/":
                return self._respond(start_response, "200 OK", "text/html; charset=utf-8",
                                     self._landing(lease.pipeline.scraper).encode())
            return self._ready(lease, start_response)

    def _metrics(self, lease: Lease, environ: Environ,
                 start_response: StartResponse) -> Iterable[bytes]:
        encoder, content_type = choose_format(environ.get("HTTP_ACCEPT"))
        gzipped = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING"))
        headers = [("Content-Type", content_type)]
        if gzipped:
            headers.append(("Content-Encoding", "gzip"))
        if environ.get("REQUEST_METHOD") == "HEAD":  # no scrape: see the module docstring
            start_response("200 OK", headers)
            return [b""]
        header = environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")
        try:
            header_timeout = float(header) if header else None
        except ValueError:
            header_timeout = None
        scraper = lease.pipeline.scraper
        output = scraper.scrape_shared(scraper.deadline_for(header_timeout), lease.extra)
        body = output.encode(encoder, content_type, gzipped)
        start_response("200 OK", [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def _ready(self, lease: Lease, start_response: StartResponse) -> Iterable[bytes]:
        scraper, required = lease.pipeline.scraper, lease.pipeline.required
        results = scraper.last_results()
        oldest = time.time() - self.ready_max_age
        if any(r is None or r.finished_at < oldest for r in results.values()):
            deadline = Deadline.after(min(scraper.scrape_timeout, READY_DEADLINE_SECONDS))
            scraper.scrape_shared(deadline, lease.extra)
            results = scraper.last_results()
        deps = {
            name: {
                "ok": r is not None and r.ok,
                "required": name in required,
                "reason": None if r is None or r.ok else str(r.reason),
            }
            for name, r in results.items()
        }
        ready = all(d["ok"] for d in deps.values() if d["required"])
        return self._json(start_response, 200 if ready else 503,
                          {"status": "ready" if ready else "unready", "dependencies": deps})

    def _landing(self, scraper: Scraper) -> str:
        rows = []
        now = time.time()
        for name, r in scraper.last_results().items():
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
            f'<p><a href="{html.escape(self.telemetry_path)}">Metrics</a> · '
            '<a href="/health/live">Liveness</a> · '
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


def make_http_server(
    address: str | Sequence[str],
    app: Callable[..., Any],
    *,
    web_config_file: str | Path | None = None,
    health_without_auth: bool = False,
    limits: Limits | None = None,
    stats: ConnectionStats | None = None,
) -> HTTPServer:
    """Bind ``address``, or each of several (a socket each, one app). With ``web_config_file``
    (exporter-toolkit format), serve TLS and/or basic auth as it says; raises
    :class:`WebConfigError` when that file is unusable. ``health_without_auth`` keeps
    ``/health/live`` and ``/health/ready`` open for probes."""
    web = None
    if web_config_file is not None:
        web = WebConfigSource(web_config_file, health_without_auth=health_without_auth)
        app = WebConfigGate(app, web, HEALTH_PATHS if health_without_auth else ())
    socks = bind_all([address] if isinstance(address, str) else list(address))
    return HTTPServer(socks, app, web=web, limits=limits, stats=stats)


def serve_in_thread(server: HTTPServer) -> threading.Thread:
    """Serve in a daemon thread (``shutdown()`` wakes and stops it)."""
    thread = threading.Thread(target=server.serve_forever, name="http",
                              daemon=True)
    thread.start()
    return thread
