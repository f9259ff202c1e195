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
"""

from __future__ import annotations

import contextlib
import enum
import resource
import selectors
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import h11
import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter import wsgi
from exporter.web import WebConfigSource, WebSettings
from exporter.wsgi import Peer, WSGIApp

log = structlog.get_logger(__name__)

CLOSE_REASONS = ("header_timeout", "idle_timeout", "write_timeout", "tls_handshake",
                 "bad_request", "limit")
RECV_BYTES = 16 * 1024
LINGER_SECONDS = 1.0  # after an error answer: read and discard until the client closes
LIMIT_LOG_INTERVAL = 60.0
ACCEPT_PAUSE_SECONDS = 0.1
FD_RESERVE = 64  # files and sockets the collectors, the pool and the logs may need


def default_max_connections() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft - FD_RESERVE))


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0
    idle_timeout: float = 120.0
    write_timeout: float = 30.0
    max_header_bytes: int = 16 * 1024
    max_connections: int = field(default_factory=default_max_connections)
    request_threads: int = 16


class ConnectionStats:
    """What the server did with connections, for the exporter's own metrics."""

    def __init__(self) -> None:
        self.open = 0
        self.closed = dict.fromkeys(CLOSE_REASONS, 0)

    def families(self) -> list[Metric]:
        gauge = GaugeMetricFamily(
            "customer_sync_exporter_http_connections",
            "Client connections open to the exporter's HTTP server (this scrape's included).",
            value=float(self.open),
        )
        counter = CounterMetricFamily(
            "customer_sync_exporter_http_connections_closed",
            "Client connections the HTTP server closed on its own, by reason: header_timeout "
            "(handshake or request head not complete in time), idle_timeout (keep-alive unused), "
            "write_timeout (answer not taken), tls_handshake (failed), bad_request (answered "
            "400, 431 or 505), limit (the longest-waiting one, to stay under max connections).",
            labels=["reason"],
        )
        for reason in CLOSE_REASONS:
            counter.add_metric([reason], float(self.closed[reason]))
        return [gauge, counter]


class _State(enum.Enum):
    HANDSHAKE = "handshake"
    HEAD = "head"  # reading a request head
    IDLE = "idle"  # keep-alive, waiting for the next request
    BUSY = "busy"  # a pool thread runs the app
    WRITE = "write"
    LINGER = "linger"  # answered and half-closed: discarding input until the client closes


EVICTABLE = frozenset({_State.HANDSHAKE, _State.HEAD, _State.IDLE, _State.WRITE, _State.LINGER})


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    peer: Any
    settings: WebSettings | None
    state: _State
    deadline: float
    h11: h11.Connection
    client_cert_ok: bool = True
    out: memoryview = field(default_factory=lambda: memoryview(b""))
    close_after: bool = False
    eof: bool = False  # the client shut its side: answer what is complete, then close
    mask: int = 0

    @property
    def tls(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)


@dataclass(frozen=True)
class _Answer:
    conn: _Conn
    data: bytes
    close: bool


class HTTPServer:
    """Serves ``app`` on an already bound, listening socket."""

    def __init__(self, sock: socket.socket, app: WSGIApp, *, web: WebConfigSource | None = None,
                 limits: Limits | None = None, stats: ConnectionStats | None = None) -> None:
        self.socket = sock
        self.app = app
        self.web = web
        self.limits = limits or Limits()
        self.stats = stats or ConnectionStats()
        self.server_address = sock.getsockname()
        sock.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._pool = ThreadPoolExecutor(max_workers=self.limits.request_threads,
                                        thread_name_prefix="http")
        self._conns: dict[int, _Conn] = {}
        # Every connection not running in the app, longest in its state first: what to close
        # when the limit is reached.
        self._evictable: OrderedDict[int, _Conn] = OrderedDict()
        self._answers: deque[_Answer] = deque()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._limit_logged_at = -LIMIT_LOG_INTERVAL
        self._limit_unlogged = 0
        self._accept_paused_until = 0.0
        self._accept_logged_at = -LIMIT_LOG_INTERVAL

    # --- the socketserver-like surface used by the service and the tests ---------------------

    def get_app(self) -> WSGIApp:
        return self.app

    @property
    def tls_enabled(self) -> bool:
        return self.web is not None and self.web.tls_enabled

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        try:
            self._selector.register(self.socket, selectors.EVENT_READ, None)
            self._selector.register(self._wake_r, selectors.EVENT_READ, self._wake_r)
            next_sweep = 0.0
            while not self._stop.is_set():
                for key, mask in self._selector.select(timeout=min(poll_interval, 0.25)):
                    if key.data is None:
                        self._accept()
                    elif key.data is self._wake_r:
                        with contextlib.suppress(OSError):
                            while self._wake_r.recv(4096):
                                pass
                    else:
                        self._on_ready(key.data, mask)
                self._deliver_answers()
                now = time.monotonic()
                self._resume_accepting(now)
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + 0.25
        finally:
            for conn in list(self._conns.values()):
                self._close(conn)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self.socket)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._wake_r)
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop ``serve_forever`` and wait until it has returned."""
        self._stop.set()
        self._wake()
        self._stopped.wait()

    def server_close(self) -> None:
        self._stop.set()
        self._wake()
        self._stopped.wait()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.socket.close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (already woken) or closed
            self._wake_w.send(b"x")

    # --- connections ---------------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(64):  # then let the others run
            try:
                sock, peer = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: pause, or the loop would spin on it
                self._pause_accepting(exc)
                return
            sock.setblocking(False)
            if len(self._conns) >= self.limits.max_connections and not self._make_room():
                sock.close()  # every connection is running a request: none to give way
                continue
            settings = self.web.current() if self.web is not None else None
            now = time.monotonic()
            conn = _Conn(sock, peer, settings, _State.HEAD, now + self.limits.header_timeout,
                         h11.Connection(h11.SERVER,
                                        max_incomplete_event_size=self.limits.max_header_bytes))
            if settings is not None and settings.tls is not None:
                try:
                    conn.sock = settings.tls.wrap_socket(sock, server_side=True,
                                                         do_handshake_on_connect=False)
                except (OSError, ValueError) as exc:
                    log.debug("TLS setup failed", client=str(peer[0]), error=str(exc))
                    sock.close()
                    self._count("tls_handshake")
                    continue
                conn.state = _State.HANDSHAKE
            self._conns[conn.sock.fileno()] = conn
            self.stats.open = len(self._conns)
            self._wait(conn, conn.state, conn.deadline)
            self._watch(conn, selectors.EVENT_READ)
            if conn.state is _State.HANDSHAKE:
                self._handshake(conn)

    def _pause_accepting(self, exc: OSError) -> None:
        """Out of descriptors (or another accept failure): stop accepting for a moment, as Go's
        server backs off; pending connections wait in the listen backlog meanwhile."""
        self._selector.unregister(self.socket)
        self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE_SECONDS
        now = time.monotonic()
        if now - self._accept_logged_at >= LIMIT_LOG_INTERVAL:
            log.warning("accepting HTTP connections failed; pausing", error=str(exc),
                        open_connections=len(self._conns))
            self._accept_logged_at = now

    def _resume_accepting(self, now: float) -> None:
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._selector.register(self.socket, selectors.EVENT_READ, None)

    def _make_room(self) -> bool:
        """Close the connection that has waited longest; False if all are running requests."""
        if self._evictable:
            _fd, oldest = next(iter(self._evictable.items()))
            self._close(oldest, "limit")
        else:
            self._count("limit")
        self._limit_unlogged += 1
        now = time.monotonic()
        if now - self._limit_logged_at >= LIMIT_LOG_INTERVAL:
            log.warning("HTTP connection limit reached: closed the connections that waited "
                        "longest for a request", limit=self.limits.max_connections,
                        closed=self._limit_unlogged)
            self._limit_logged_at, self._limit_unlogged = now, 0
        return len(self._conns) < self.limits.max_connections

    def _wait(self, conn: _Conn, state: _State, deadline: float) -> None:
        conn.state, conn.deadline = state, deadline
        fd = conn.sock.fileno()
        if state in EVICTABLE:
            self._evictable[fd] = conn
            self._evictable.move_to_end(fd)
        else:
            self._evictable.pop(fd, None)

    def _watch(self, conn: _Conn, mask: int) -> None:
        if mask == conn.mask:
            return
        if conn.mask and mask:
            self._selector.modify(conn.sock, mask, conn)
        elif mask:
            self._selector.register(conn.sock, mask, conn)
        else:
            self._selector.unregister(conn.sock)
        conn.mask = mask

    def _count(self, reason: str) -> None:
        self.stats.closed[reason] += 1

    def _close(self, conn: _Conn, reason: str | None = None) -> None:
        fd = conn.sock.fileno()
        if self._conns.get(fd) is not conn:
            return
        if reason is not None:
            self._count(reason)
            log.debug("closing HTTP connection", client=str(conn.peer[0]), reason=reason,
                      state=conn.state.value)
        with contextlib.suppress(KeyError, ValueError, OSError):
            if conn.mask:
                self._selector.unregister(conn.sock)
        conn.mask = 0
        del self._conns[fd]
        self._evictable.pop(fd, None)
        self.stats.open = len(self._conns)
        conn.sock.close()

    def _sweep(self, now: float) -> None:
        reasons = {_State.HANDSHAKE: "header_timeout", _State.HEAD: "header_timeout",
                   _State.IDLE: "idle_timeout", _State.WRITE: "write_timeout",
                   _State.LINGER: None}
        for conn in [c for c in self._conns.values() if c.state is not _State.BUSY]:
            if now >= conn.deadline:
                reason = reasons[conn.state]
                self._close(conn, reason)

    def _on_ready(self, conn: _Conn, mask: int) -> None:
        if self._conns.get(conn.sock.fileno()) is not conn:
            return
        if conn.state is _State.HANDSHAKE:
            self._handshake(conn)
        elif conn.state in (_State.HEAD, _State.IDLE):
            self._read(conn)
        elif conn.state is _State.WRITE:
            self._write(conn)
        elif conn.state is _State.LINGER:
            self._linger(conn)

    # --- TLS -----------------------------------------------------------------------------------

    def _handshake(self, conn: _Conn) -> None:
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket) and conn.settings is not None
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(conn, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(conn, selectors.EVENT_WRITE)
            return
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            log.debug("TLS handshake failed", client=str(conn.peer[0]), error=str(exc))
            self._close(conn, "tls_handshake")
            return
        conn.client_cert_ok = conn.settings.client_cert_ok(sock)
        if not conn.client_cert_ok and not (self.web is not None
                                            and self.web.health_without_auth):
            log.debug("client certificate not allowed", client=str(conn.peer[0]))
            self._close(conn, "tls_handshake")
            return
        self._wait(conn, _State.HEAD, time.monotonic() + self.limits.header_timeout)
        self._watch(conn, selectors.EVENT_READ)
        self._read(conn)  # the request may have come with the handshake's last flight

    # --- reading a request ---------------------------------------------------------------------

    def _read(self, conn: _Conn) -> None:
        sock = conn.sock
        for _ in range(4):
            try:
                data = sock.recv(RECV_BYTES)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                self._watch(conn, selectors.EVENT_WRITE)
                break
            except OSError:
                self._close(conn)
                return
            if not data:
                conn.eof = True
                break
            if conn.state is _State.IDLE:  # the next request begins: its head has a deadline
                self._wait(conn, _State.HEAD, time.monotonic() + self.limits.header_timeout)
            conn.h11.receive_data(data)
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            if not pending and len(data) < RECV_BYTES:  # drained: wait for the next event
                break
        self._advance(conn)

    def _advance(self, conn: _Conn) -> None:
        """Hand a complete request to the pool, or keep waiting for one."""
        try:
            buffered = len(conn.h11.trailing_data[0])
            event = conn.h11.next_event()
            if isinstance(event, h11.Request):
                # h11 bounds only a head still incomplete; one that arrived whole is measured here
                if buffered - len(conn.h11.trailing_data[0]) > self.limits.max_header_bytes:
                    self._reject(conn, 431)
                    return
                ending = conn.h11.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint if exc.error_status_hint in (400, 431) else 400
            self._reject(conn, status)
            return
        if event is h11.NEED_DATA:
            if conn.eof:  # gone before completing a request: nothing to answer
                self._close(conn)
            elif conn.state is _State.IDLE and conn.h11.trailing_data[0]:
                self._wait(conn, _State.HEAD, time.monotonic() + self.limits.header_timeout)
            return
        if isinstance(event, h11.ConnectionClosed) or not isinstance(event, h11.Request):
            self._close(conn)
            return
        if not event.http_version.startswith(b"1."):
            self._reject(conn, 505)
            return
        has_body = not isinstance(ending, h11.EndOfMessage)
        self._wait(conn, _State.BUSY, float("inf"))
        self._watch(conn, 0)
        self._pool.submit(self._respond, conn, event, has_body)

    def _reject(self, conn: _Conn, status: int) -> None:
        phrase = {400: "Bad Request", 431: "Request Header Fields Too Large",
                  505: "HTTP Version Not Supported"}[status]
        body = f"{status} {phrase}\n".encode()
        try:
            data = conn.h11.send(h11.Response(status_code=status, reason=phrase.encode(),
                                              headers=_headers(body, close=True)))
            data = (data or b"") + (conn.h11.send(h11.Data(data=body)) or b"")
            data += conn.h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            data = b""
        self._count("bad_request")
        self._start_write(conn, data, close=True)

    # --- running the app (pool threads) --------------------------------------------------------

    def _respond(self, conn: _Conn, request: h11.Request, has_body: bool) -> None:
        close = has_body  # a body we do not read: answer, then close
        try:
            host, port = self.server_address[:2]
            peer = Peer(str(conn.peer[0]), str(host), int(port), conn.tls, conn.client_cert_ok)
            status, headers, body = wsgi.call(self.app, wsgi.environ_for(request, peer))
            if request.method == b"HEAD":
                body = b""
            code, _, phrase = status.partition(" ")
            headers = [(k, v) for k, v in headers if k.lower() != "connection"]
            headers.append(("Date", formatdate(usegmt=True)))
            if close:
                headers.append(("Connection", "close"))
            data = conn.h11.send(h11.Response(status_code=int(code), reason=phrase.encode(),
                                              headers=headers)) or b""
            if body:
                data += conn.h11.send(h11.Data(data=body)) or b""
            data += conn.h11.send(h11.EndOfMessage()) or b""
        except Exception:  # an app or framing bug: the client still gets an answer
            log.exception("HTTP request failed", path=request.target.decode("latin-1")[:200])
            body = b"500 Internal Server Error\n"
            raw = [b"HTTP/1.1 500 Internal Server Error\r\n"]
            raw += [f"{k}: {v}\r\n".encode() for k, v in _headers(body, close=True)]
            data, close = b"".join([*raw, b"\r\n", body]), True
        self._answers.append(_Answer(conn, data, close))
        self._wake()

    # --- writing the answer (back in the selector thread) -------------------------------------

    def _deliver_answers(self) -> None:
        while self._answers:
            answer = self._answers.popleft()
            if self._conns.get(answer.conn.sock.fileno()) is answer.conn:
                self._start_write(answer.conn, answer.data, answer.close)

    def _start_write(self, conn: _Conn, data: bytes, close: bool) -> None:
        conn.out, conn.close_after = memoryview(data), close
        self._wait(conn, _State.WRITE, time.monotonic() + self.limits.write_timeout)
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        while conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                self._watch(conn, selectors.EVENT_WRITE)
                return
            except ssl.SSLWantReadError:
                self._watch(conn, selectors.EVENT_READ)
                return
            except OSError:
                self._close(conn)
                return
            conn.out = conn.out[sent:]
        if conn.close_after or conn.h11.our_state is not h11.DONE \
                or conn.h11.their_state is not h11.DONE:
            self._half_close(conn)
            return
        conn.h11.start_next_cycle()
        self._wait(conn, _State.IDLE, time.monotonic() + self.limits.idle_timeout)
        self._watch(conn, selectors.EVENT_READ)
        self._advance(conn)  # a pipelined request may be buffered already

    def _half_close(self, conn: _Conn) -> None:
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        self._wait(conn, _State.LINGER, time.monotonic() + LINGER_SECONDS)
        self._watch(conn, selectors.EVENT_READ)

    def _linger(self, conn: _Conn) -> None:
        try:
            while conn.sock.recv(RECV_BYTES):
                pass
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError:
            pass
        self._close(conn)


def _headers(body: bytes, *, close: bool) -> list[tuple[str, str]]:
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
               ("Date", formatdate(usegmt=True))]
    if close:
        headers.append(("Connection", "close"))
    return headers


# --- binding -------------------------------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """A listening socket: every address, dual-stack if possible, for ``host`` ''."""
    if host == "":
        try:
            return _listen(socket.AF_INET6, "::", port, dual_stack=True)
        except OSError:
            host = "0.0.0.0"
    return _listen(socket.AF_INET6 if ":" in host else socket.AF_INET, host, port)


def _listen(family: int, host: str, port: int, *, dual_stack: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if dual_stack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        # A burst of scrapers and probes overflows a short backlog: the kernel drops their SYNs
        # and each retries a second later. Go uses somaxconn; the kernel caps this at it anyway.
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock
