"""One client connection's state, and the table of all of them: registrations with the selector,
deadlines, and the order in which they give way when the connection limit is reached.

Only the selector thread touches the table; a pool thread only reads the connection it was
handed and queues an :class:`Answer`.
"""

from __future__ import annotations

import contextlib
import enum
import math
import selectors
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import h11
import structlog

from exporter.httpserver.limits import ConnectionStats, Limits
from exporter.web import WebSettings

log = structlog.get_logger(__name__)

LIMIT_LOG_INTERVAL = 60.0


class State(enum.Enum):
    HANDSHAKE = "handshake"
    HEAD = "head"  # reading a request head
    IDLE = "idle"  # keep-alive, waiting for the next request
    BUSY = "busy"  # a pool thread runs the app
    WRITE = "write"
    LINGER = "linger"  # answered and half-closed: discarding input until the client closes


EVICTABLE = frozenset({State.HANDSHAKE, State.HEAD, State.IDLE, State.WRITE, State.LINGER})
# What a deadline passed in each state is counted as (LINGER's is the normal end).
EXPIRED = {State.HANDSHAKE: "header_timeout", State.HEAD: "header_timeout",
           State.IDLE: "idle_timeout", State.WRITE: "write_timeout", State.LINGER: None}


@dataclass(eq=False)
class Conn:
    sock: socket.socket
    peer: Any
    local: tuple[str, int]  # the listening address it came in on: SERVER_NAME, SERVER_PORT
    settings: WebSettings | None
    state: State
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
class Answer:
    conn: Conn
    data: bytes
    close: bool


class ConnectionTable:
    """Every open connection, keyed by file descriptor."""

    def __init__(self, selector: selectors.BaseSelector, limits: Limits,
                 stats: ConnectionStats) -> None:
        self._selector = selector
        self._limits = limits
        self.stats = stats
        self._conns: dict[int, Conn] = {}
        # Every connection not running in the app, longest in its state first: what to close
        # when the limit is reached.
        self._evictable: OrderedDict[int, Conn] = OrderedDict()
        self._limit_logged_at = -LIMIT_LOG_INTERVAL
        self._limit_unlogged = 0
        # No connection not running in the app has a deadline before this (monotonic; a sweep
        # makes it exact again): when the selector loop must sweep next.
        self.next_deadline = math.inf

    def __len__(self) -> int:
        return len(self._conns)

    def __iter__(self) -> Iterator[Conn]:
        return iter(list(self._conns.values()))

    def is_open(self, conn: Conn) -> bool:
        return self._conns.get(conn.sock.fileno()) is conn

    def add(self, conn: Conn) -> None:
        self._conns[conn.sock.fileno()] = conn
        self.stats.open = len(self._conns)
        self.wait(conn, conn.state, conn.deadline)
        self.watch(conn, selectors.EVENT_READ)

    def wait(self, conn: Conn, state: State, deadline: float) -> None:
        """``conn`` is now in ``state`` until ``deadline`` (monotonic)."""
        conn.state, conn.deadline = state, deadline
        if state is not State.BUSY:
            self.next_deadline = min(self.next_deadline, deadline)
        fd = conn.sock.fileno()
        if state in EVICTABLE:
            self._evictable[fd] = conn
            self._evictable.move_to_end(fd)
        else:
            self._evictable.pop(fd, None)

    def watch(self, conn: Conn, mask: int) -> None:
        """Wake the selector for these events of ``conn`` (0: none)."""
        if mask == conn.mask:
            return
        if conn.mask and mask:
            self._selector.modify(conn.sock, mask, conn)
        elif mask:
            self._selector.register(conn.sock, mask, conn)
        else:
            self._selector.unregister(conn.sock)
        conn.mask = mask

    def count(self, reason: str) -> None:
        self.stats.closed[reason] += 1

    def close(self, conn: Conn, reason: str | None = None) -> None:
        """Close ``conn``; a ``reason`` counts it as cut by the server."""
        fd = conn.sock.fileno()
        if self._conns.get(fd) is not conn:
            return
        if reason is not None:
            self.count(reason)
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

    def close_all(self) -> None:
        for conn in self:
            self.close(conn)

    def sweep(self, now: float) -> None:
        """Close every connection whose deadline has passed; note when the next one falls."""
        self.next_deadline = math.inf
        for conn in self:
            if conn.state is State.BUSY:
                continue
            if now >= conn.deadline:
                self.close(conn, EXPIRED[conn.state])
            else:
                self.next_deadline = min(self.next_deadline, conn.deadline)

    def make_room(self) -> bool:
        """Close the connection that has waited longest; False if all are running requests."""
        if self._evictable:
            _fd, oldest = next(iter(self._evictable.items()))
            self.close(oldest, "limit")
        else:
            self.count("limit")
        self._limit_unlogged += 1
        now = time.monotonic()
        if now - self._limit_logged_at >= LIMIT_LOG_INTERVAL:
            log.warning("HTTP connection limit reached: closed the connections that waited "
                        "longest for a request", limit=self._limits.max_connections,
                        closed=self._limit_unlogged)
            self._limit_logged_at, self._limit_unlogged = now, 0
        return len(self._conns) < self._limits.max_connections
