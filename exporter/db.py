"""The exporter's one small PostgreSQL pool, with server-side limits on every checkout.

Every connection carries ``application_name`` and has ``statement_timeout`` (and
``lock_timeout``) in force that never exceeds what is left of the scrape budget, so a slow query
dies in PostgreSQL and not only in the client. The value is remembered per pooled connection and
sent again only when it would outlast the deadline or cut it needlessly short (below
``DEADLINE_KEPT_ABOVE`` of what is left): a scrape after scrape with the same budget sends it
once per connection, not once per query (issue 16: every ``set_config`` is a statement).

A connection lent by the pool is checked with a round trip only when its socket has something
to read (:func:`check_if_stirred`): an idle connection gets nothing unasked but the server's
goodbye (a restart, ``pg_terminate_backend``, a killed backend's closed socket), so a quiet one
costs no statement and a dead one is still replaced before a collector gets it.
"""

from __future__ import annotations

import select
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool, PoolTimeout

from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import DatabaseConfig
from exporter.errors import describe

_CHECKOUT_WAIT_SECONDS = 1.0
_CLIENT_MARGIN_MS = 50  # the client's share of the budget: reading the answer
DEADLINE_KEPT_ABOVE = 0.9  # a value in force down to this share of what is left is kept
DEADLINE_SENT_AT = 0.95  # a value sent is this share of what is left: scrape jitter keeps it


def deadline_ms(remaining_s: float, in_force_ms: int | None) -> int | None:
    """The server-side timeout to send for ``remaining_s`` seconds left, or None when
    ``in_force_ms`` (the connection's current one) already fits: never beyond what is left,
    and not needlessly short."""
    left_ms = max(1, int(remaining_s * 1000) - _CLIENT_MARGIN_MS)
    if in_force_ms is not None and DEADLINE_KEPT_ABOVE * left_ms <= in_force_ms <= left_ms:
        return None
    return max(1, int(left_ms * DEADLINE_SENT_AT))


def classify(exc: BaseException) -> Reason:
    """Map a psycopg error to the closed failure set. Its message is ``describe(exc)``:
    psycopg's messages hold no passwords."""
    if isinstance(exc, errors.QueryCanceled | errors.LockNotAvailable):
        return Reason.TIMEOUT
    if isinstance(exc, errors.InvalidPassword | errors.InvalidAuthorizationSpecification):
        return Reason.AUTH
    if isinstance(exc, psycopg.OperationalError):
        text = str(exc).lower()
        if "password authentication failed" in text or "no password supplied" in text:
            return Reason.AUTH
        if "could not translate host name" in text or "name or service not known" in text:
            return Reason.DNS
        if "ssl" in text or "certificate" in text:
            return Reason.TLS
        if "timeout expired" in text:
            return Reason.TIMEOUT
        return Reason.CONNECT
    if isinstance(exc, psycopg.Error):
        return Reason.QUERY
    return Reason.INTERNAL


def check_if_stirred(conn: psycopg.Connection[Any]) -> None:
    """The pool's check of a connection it lends: psycopg_pool's own (a round trip) when the
    server has written to the idle connection or closed it, else nothing. Raises if it is bad."""
    poll = select.poll()
    poll.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if poll.poll(0):
        ConnectionPool.check_connection(conn)


class Database:
    """A lazily opened pool; the exporter starts and serves even while PostgreSQL is down."""

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self._kwargs: dict[str, Any] = {
            "application_name": config.application_name,
            "connect_timeout": max(1, int(config.connect_timeout)),
            "autocommit": True,
        }
        if config.password_file is not None:
            self._kwargs["password"] = config.password_file.get_secret_value()
        self.pool = ConnectionPool(
            config.dsn.get_secret_value(),
            min_size=1,
            max_size=config.pool_max_size,
            kwargs=self._kwargs,
            open=False,
            check=check_if_stirred,
            reconnect_timeout=0,  # keep retrying in the background forever
            name="customer-sync-exporter",
        )
        self._opened = False
        # The statement_timeout (= lock_timeout) in force on each pooled connection, in ms.
        self._in_force: weakref.WeakKeyDictionary[psycopg.Connection[Any], int] = (
            weakref.WeakKeyDictionary())
        self._in_force_lock = threading.Lock()

    def open(self) -> None:
        if not self._opened:
            self.pool.open(wait=False)
            self._opened = True

    def connect_direct(self, **extra: Any) -> psycopg.Connection[Any]:
        """A connection outside the pool (long start-up scans, diagnosis of pool failures)."""
        return psycopg.connect(self.config.dsn.get_secret_value(), **{**self._kwargs, **extra})

    @contextmanager
    def connection(self, deadline: Deadline) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection whose statements cannot outlive ``deadline``."""
        self.open()
        remaining = deadline.remaining()
        if remaining <= 0.05:
            raise CollectorError(Reason.TIMEOUT, "no time left for the database")
        try:
            conn_cm = self.pool.connection(timeout=min(remaining, _CHECKOUT_WAIT_SECONDS))
            conn = conn_cm.__enter__()
        except PoolTimeout:
            raise self._diagnose(deadline) from None
        try:
            self._limit(conn, deadline)
            yield conn
        except CollectorError:
            conn_cm.__exit__(None, None, None)
            raise
        except psycopg.Error as exc:
            conn_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise CollectorError(classify(exc), describe(exc)) from None
        except BaseException as exc:
            conn_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        else:
            conn_cm.__exit__(None, None, None)

    def _limit(self, conn: psycopg.Connection[Any], deadline: Deadline) -> None:
        """Put a timeout that fits ``deadline`` in force on ``conn``, if it has none yet."""
        with self._in_force_lock:
            in_force = self._in_force.get(conn)
        ms = deadline_ms(deadline.remaining(), in_force)
        if ms is None:
            return
        with self._in_force_lock:
            self._in_force.pop(conn, None)  # unknown until the statement has succeeded
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false),"
            " set_config('lock_timeout', %s, false)",
            (f"{ms}ms", f"{ms}ms"),
        )
        with self._in_force_lock:
            self._in_force[conn] = ms

    def _diagnose(self, deadline: Deadline) -> CollectorError:
        """The pool gave no connection in time: find out why with one direct attempt."""
        timeout = max(1, min(int(deadline.remaining()), int(self.config.connect_timeout)))
        try:
            with self.connect_direct(connect_timeout=timeout):
                pass
        except psycopg.Error as exc:
            return CollectorError(classify(exc), describe(exc))
        return CollectorError(Reason.TIMEOUT, "no pooled connection became free in time")

    def close(self) -> None:
        if self._opened:
            self.pool.close(timeout=2)
            self._opened = False
