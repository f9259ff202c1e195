"""The exporter's one small PostgreSQL pool, with server-side limits on every checkout.

Every connection carries ``application_name`` and gets ``statement_timeout`` (and
``lock_timeout``) set to what is left of the scrape budget, so a slow query dies in PostgreSQL
and not only in the client.
"""

from __future__ import annotations

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
            check=ConnectionPool.check_connection,
            reconnect_timeout=0,  # keep retrying in the background forever
            name="customer-sync-exporter",
        )
        self._opened = False

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
            ms = max(1, int(deadline.remaining() * 1000) - 50)
            conn.execute(
                "SELECT set_config('statement_timeout', %s, false),"
                " set_config('lock_timeout', %s, false)",
                (f"{ms}ms", f"{ms}ms"),
            )
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
