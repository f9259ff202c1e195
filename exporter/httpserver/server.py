"""The selector loop: one thread accepts on every listener, steps each connection through its
states (:mod:`.conn`) as its socket becomes ready, and hands complete requests to the pool."""

from __future__ import annotations

import contextlib
import math
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import h11
import structlog

from exporter import wsgi
from exporter.httpserver import framing, tls
from exporter.httpserver.conn import Answer, Conn, ConnectionTable, State
from exporter.httpserver.limits import ConnectionStats, Limits
from exporter.web import WebConfigSource
from exporter.wsgi import Peer, WSGIApp

log = structlog.get_logger(__name__)

RECV_BYTES = 16 * 1024
LINGER_SECONDS = 1.0  # after an error answer: read and discard until the client closes
ACCEPT_LOG_INTERVAL = 60.0
ACCEPT_PAUSE_SECONDS = 0.1


@dataclass(frozen=True)
class _Listener:
    sock: socket.socket
    address: tuple[str, int]


class HTTPServer:
    """Serves ``app`` on already bound, listening sockets (one or several: one app for all)."""

    def __init__(self, socks: socket.socket | Sequence[socket.socket], app: WSGIApp, *,
                 web: WebConfigSource | None = None, limits: Limits | None = None,
                 stats: ConnectionStats | None = None) -> None:
        socks = [socks] if isinstance(socks, socket.socket) else list(socks)
        self.app = app
        self.web = web
        self.limits = limits or Limits()
        self.stats = stats or ConnectionStats()
        self._listeners = [_Listener(s, s.getsockname()[:2]) for s in socks]
        for sock in socks:
            sock.setblocking(False)
        self.server_addresses = [s.getsockname() for s in socks]
        self.server_address = self.server_addresses[0]
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._pool = ThreadPoolExecutor(max_workers=self.limits.request_threads,
                                        thread_name_prefix="http")
        self._conns = ConnectionTable(self._selector, self.limits, self.stats)
        self._answers: deque[Answer] = deque()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._accept_paused_until = 0.0
        self._accept_logged_at = -ACCEPT_LOG_INTERVAL

    # --- the socketserver-like surface used by the service and the tests ---------------------

    def get_app(self) -> WSGIApp:
        return self.app

    @property
    def tls_enabled(self) -> bool:
        return self.web is not None and self.web.tls_enabled

    def serve_forever(self) -> None:
        """Until :meth:`shutdown`. The loop sleeps until a socket is ready, an answer is handed
        over or the next connection deadline falls due, and not a moment more often: an idle
        exporter wakes only for its clients' timeouts."""
        self._stopped.clear()
        try:
            self._listen(True)
            self._selector.register(self._wake_r, selectors.EVENT_READ, self._wake_r)
            while not self._stop.is_set():
                for key, mask in self._selector.select(timeout=self._sleep()):
                    self._dispatch(key.data, mask)
                self._deliver_answers()
                now = time.monotonic()
                self._resume_accepting(now)
                if now >= self._conns.next_deadline:
                    self._conns.sweep(now)
        finally:
            self._conns.close_all()
            self._listen(False)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._wake_r)
            self._stopped.set()

    def _sleep(self) -> float | None:
        """How long the selector may wait: until the next deadline (None: no deadline)."""
        due = self._conns.next_deadline
        if self._accept_paused_until:
            due = min(due, self._accept_paused_until)
        return None if due == math.inf else max(0.0, due - time.monotonic())

    def shutdown(self) -> None:
        """Stop ``serve_forever`` and wait until it has returned."""
        self._stop.set()
        self._wake()
        self._stopped.wait()

    def server_close(self) -> None:
        self.shutdown()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for listener in self._listeners:
            listener.sock.close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (already woken) or closed
            self._wake_w.send(b"x")

    def _dispatch(self, data: object, mask: int) -> None:
        if isinstance(data, _Listener):
            self._accept(data)
        elif data is self._wake_r:
            with contextlib.suppress(OSError):
                while self._wake_r.recv(4096):
                    pass
        elif isinstance(data, Conn) and self._conns.is_open(data):
            self._on_ready(data)

    # --- accepting -----------------------------------------------------------------------------

    def _listen(self, on: bool) -> None:
        for listener in self._listeners:
            if on:
                self._selector.register(listener.sock, selectors.EVENT_READ, listener)
            else:
                with contextlib.suppress(KeyError, ValueError):  # paused: not registered
                    self._selector.unregister(listener.sock)

    def _accept(self, listener: _Listener) -> None:
        for _ in range(64):  # then let the others run
            try:
                sock, peer = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: pause, or the loop would spin on it
                self._pause_accepting(exc)
                return
            sock.setblocking(False)
            if len(self._conns) >= self.limits.max_connections and not self._conns.make_room():
                sock.close()  # every connection is running a request: none to give way
                continue
            self._open(sock, peer, listener.address)

    def _open(self, sock: socket.socket, peer: tuple[str, int], local: tuple[str, int]) -> None:
        settings = self.web.current() if self.web is not None else None
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        conn = Conn(sock, peer, local, settings, State.HEAD,
                    time.monotonic() + self.limits.header_timeout, parser)
        if settings is not None and settings.tls is not None:
            wrapped = tls.wrap(sock, settings, str(peer[0]))
            if wrapped is None:
                sock.close()
                self._conns.count("tls_handshake")
                return
            conn.sock, conn.state = wrapped, State.HANDSHAKE
        self._conns.add(conn)
        if conn.state is State.HANDSHAKE:
            self._handshake(conn)

    def _pause_accepting(self, exc: OSError) -> None:
        """Out of descriptors (or another accept failure): stop accepting for a moment, as Go's
        server backs off; pending connections wait in the listen backlog meanwhile."""
        if self._accept_paused_until:
            return  # another listener failed in the same round: already paused
        self._listen(False)
        now = time.monotonic()
        self._accept_paused_until = now + ACCEPT_PAUSE_SECONDS
        if now - self._accept_logged_at >= ACCEPT_LOG_INTERVAL:
            log.warning("accepting HTTP connections failed; pausing", error=str(exc),
                        open_connections=len(self._conns))
            self._accept_logged_at = now

    def _resume_accepting(self, now: float) -> None:
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._listen(True)

    # --- stepping a connection ---------------------------------------------------------------

    def _on_ready(self, conn: Conn) -> None:
        if conn.state is State.HANDSHAKE:
            self._handshake(conn)
        elif conn.state in (State.HEAD, State.IDLE):
            self._read(conn)
        elif conn.state is State.WRITE:
            self._write(conn)
        elif conn.state is State.LINGER:
            self._linger(conn)

    def _handshake(self, conn: Conn) -> None:
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket) and conn.settings is not None
        step = tls.handshake_step(sock, str(conn.peer[0]))
        if step is tls.Step.WANT_READ or step is tls.Step.WANT_WRITE:
            want = selectors.EVENT_READ if step is tls.Step.WANT_READ else selectors.EVENT_WRITE
            self._conns.watch(conn, want)
            return
        if step is tls.Step.FAILED:
            self._conns.close(conn, "tls_handshake")
            return
        conn.client_cert_ok = conn.settings.client_cert_ok(sock)
        if not conn.client_cert_ok and not (self.web is not None
                                            and self.web.health_without_auth):
            log.debug("client certificate not allowed", client=str(conn.peer[0]))
            self._conns.close(conn, "tls_handshake")
            return
        self._conns.wait(conn, State.HEAD, time.monotonic() + self.limits.header_timeout)
        self._conns.watch(conn, selectors.EVENT_READ)
        self._read(conn)  # the request may have come with the handshake's last flight

    def _read(self, conn: Conn) -> None:
        sock = conn.sock
        for _ in range(4):
            try:
                data = sock.recv(RECV_BYTES)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                self._conns.watch(conn, selectors.EVENT_WRITE)
                break
            except OSError:
                self._conns.close(conn)
                return
            if not data:
                conn.eof = True
                break
            if conn.state is State.IDLE:  # the next request begins: its head has a deadline
                self._conns.wait(conn, State.HEAD, time.monotonic() + self.limits.header_timeout)
            conn.h11.receive_data(data)
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            if not pending and len(data) < RECV_BYTES:  # drained: wait for the next event
                break
        self._advance(conn)

    def _advance(self, conn: Conn) -> None:
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
                self._conns.close(conn)
            elif conn.state is State.IDLE and conn.h11.trailing_data[0]:
                self._conns.wait(conn, State.HEAD, time.monotonic() + self.limits.header_timeout)
            return
        if isinstance(event, h11.ConnectionClosed) or not isinstance(event, h11.Request):
            self._conns.close(conn)
            return
        if not event.http_version.startswith(b"1."):
            self._reject(conn, 505)
            return
        has_body = not isinstance(ending, h11.EndOfMessage)
        self._conns.wait(conn, State.BUSY, float("inf"))
        self._conns.watch(conn, 0)
        self._pool.submit(self._respond, conn, event, has_body)

    def _reject(self, conn: Conn, status: int) -> None:
        self._conns.count("bad_request")
        self._start_write(conn, framing.error_answer(conn.h11, status), close=True)

    # --- running the app (pool threads) --------------------------------------------------------

    def _respond(self, conn: Conn, request: h11.Request, has_body: bool) -> None:
        close = has_body  # a body we do not read: answer, then close
        try:
            host, port = conn.local
            peer = Peer(str(conn.peer[0]), str(host), int(port), conn.tls, conn.client_cert_ok)
            status, headers, body = wsgi.call(self.app, wsgi.environ_for(request, peer))
            data = framing.app_answer(conn.h11, status, headers, body,
                                      head=request.method == b"HEAD", close=close)
        except Exception:  # an app or framing bug: the client still gets an answer
            log.exception("HTTP request failed", path=request.target.decode("latin-1")[:200])
            data, close = framing.internal_error(), True
        self._answers.append(Answer(conn, data, close))
        self._wake()

    # --- writing the answer (back in the selector thread) -------------------------------------

    def _deliver_answers(self) -> None:
        while self._answers:
            answer = self._answers.popleft()
            if self._conns.is_open(answer.conn):
                self._start_write(answer.conn, answer.data, answer.close)

    def _start_write(self, conn: Conn, data: bytes, close: bool) -> None:
        conn.out, conn.close_after = memoryview(data), close
        self._conns.wait(conn, State.WRITE, time.monotonic() + self.limits.write_timeout)
        self._write(conn)

    def _write(self, conn: Conn) -> None:
        while conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                self._conns.watch(conn, selectors.EVENT_WRITE)
                return
            except ssl.SSLWantReadError:
                self._conns.watch(conn, selectors.EVENT_READ)
                return
            except OSError:
                self._conns.close(conn)
                return
            conn.out = conn.out[sent:]
        if conn.close_after or conn.h11.our_state is not h11.DONE \
                or conn.h11.their_state is not h11.DONE:
            self._half_close(conn)
            return
        conn.h11.start_next_cycle()
        self._conns.wait(conn, State.IDLE, time.monotonic() + self.limits.idle_timeout)
        self._conns.watch(conn, selectors.EVENT_READ)
        self._advance(conn)  # a pipelined request may be buffered already

    def _half_close(self, conn: Conn) -> None:
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._conns.close(conn)
            return
        self._conns.wait(conn, State.LINGER, time.monotonic() + LINGER_SECONDS)
        self._conns.watch(conn, selectors.EVENT_READ)

    def _linger(self, conn: Conn) -> None:
        try:
            while conn.sock.recv(RECV_BYTES):
                pass
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError:
            pass
        self._conns.close(conn)
