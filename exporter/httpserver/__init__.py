"""The HTTP/1.1 server under the WSGI app: slow or idle clients cost a socket, never a thread.

One thread (``serve_forever``) owns every connection through a selector: it accepts, runs TLS
handshakes, reads request heads into h11 (the sans-I/O HTTP/1.1 parser of python-hyper, which
also frames the answers and keeps keep-alive and pipelining right), writes answers and enforces
the deadlines. Only a complete request is handed to a small, fixed pool of threads that run the
WSGI app; the pool thread returns the answer's bytes and the selector thread sends them. So a
thousand clients that trickle their headers, or never read their answer, hold a thousand
sockets and a few KiB each, while the threads stay free for the next scrape.

Bounds (Go's ``net/http`` names in brackets):

* ``header_timeout`` [ReadHeaderTimeout]: a new connection has this long for its TLS handshake,
  and then this long again for a complete request head; a keep-alive connection, from the first
  byte of its next request. Cut silently, as Go does.
* ``idle_timeout`` [IdleTimeout]: a keep-alive connection may wait this long for its next request.
* ``write_timeout``: an answer must be taken by the client within this long.
* ``max_header_bytes`` [MaxHeaderBytes]: a longer head is answered 431.
* ``max_connections`` [netutil.LimitListener, not in Go's default]: when this many are open, the
  connection that has waited longest for a request (handshake, head or keep-alive) is closed to
  make room, so a flood of slow clients cannot lock a scraper out; counted as ``limit`` and logged.
  The default leaves room under ``RLIMIT_NOFILE`` for the collectors' own files and sockets.
* ``request_threads``: requests beyond it queue in arrival order; with single-flight scrapes a
  queued scrape usually finds the answer already made.

Malformed requests get ``400`` (``431`` for a head too large), an HTTP major version other than 1
gets ``505`` (RFC 9110 §15.6.6: the server does not support that major version; h11 would parse
``HTTP/9.9`` as if it were 1.1), always with a status line, ``Connection: close`` and a plain-text
body; then the connection is closed after a short linger so the answer is not lost to a reset.
Every connection the server cuts is counted by reason in
``customer_sync_exporter_http_connections_closed_total``.

One server may listen on several sockets (``--web.listen-address`` given more than once): one
selector, one pool and one limit for all of them. The parts: :mod:`.server` (the selector loop),
:mod:`.conn` (a connection's states and the table of them), :mod:`.tls` (the handshake steps),
:mod:`.framing` (answer bytes), :mod:`.limits` (bounds and stats), :mod:`.listen` (addresses).
"""

from exporter.httpserver.limits import CLOSE_REASONS, ConnectionStats, Limits
from exporter.httpserver.listen import bind, bind_all, parse_listen_address
from exporter.httpserver.server import HTTPServer

__all__ = [
    "CLOSE_REASONS",
    "ConnectionStats",
    "HTTPServer",
    "Limits",
    "bind",
    "bind_all",
    "parse_listen_address",
]
