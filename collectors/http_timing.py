"""requests sessions whose connections time DNS, TCP connect and the TLS handshake apart.

urllib3 resolves and connects in one call, so requests' adapter is given connection classes
that resolve and connect themselves, recording each phase (and the peer certificate's notAfter)
into the :class:`Timings` bound by :func:`recording`. The binding is per thread because urllib3
hands a connection nothing of its caller, and requests connects in the calling thread: a probe
binds its own Timings for the length of its request, so probes in other threads never mix.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from collectors.tls_cert import der_not_after


@dataclass
class Timings:
    """Seconds per phase (``dns``, ``connect``, ``tls``) and the certificate's notAfter."""

    phases: dict[str, float] = field(default_factory=dict)
    cert_not_after: float | None = None


_current = threading.local()  # the Timings of the request running in this thread


@contextmanager
def recording(timings: Timings) -> Iterator[Timings]:
    """Connections made by this thread inside the block record into ``timings``."""
    _current.timings = timings
    try:
        yield timings
    finally:
        _current.timings = None


def _bound() -> Timings | None:
    timings: Timings | None = getattr(_current, "timings", None)
    return timings


def _record(phase: str, seconds: float) -> None:
    if (timings := _bound()) is not None:
        timings.phases[phase] = timings.phases.get(phase, 0.0) + seconds


class _TimedHTTPConnection(HTTPConnection):
    """Resolves and connects itself so DNS and TCP connect are timed separately."""

    def _new_conn(self) -> socket.socket:
        start = time.monotonic()
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        finally:
            _record("dns", time.monotonic() - start)
        start = time.monotonic()
        error: OSError | None = None
        try:
            for *_, sockaddr in infos:
                try:
                    return urllib3_connection.create_connection(
                        (str(sockaddr[0]), self.port),
                        self.timeout,
                        source_address=self.source_address,
                        socket_options=self.socket_options,
                    )
                except TimeoutError as exc:
                    msg = f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
                    raise ConnectTimeoutError(self, msg) from exc
                except OSError as exc:
                    error = exc
            raise NewConnectionError(
                self, f"Failed to establish a new connection: {error}"
            ) from error
        finally:
            _record("connect", time.monotonic() - start)


class _TimedHTTPSConnection(HTTPSConnection, _TimedHTTPConnection):
    """Adds the TLS handshake time and the peer certificate's expiry."""

    def connect(self) -> None:
        timings = _bound()
        before = dict(timings.phases) if timings else {}
        start = time.monotonic()
        try:
            super().connect()
        finally:
            if timings is not None:
                tcp = sum(
                    timings.phases.get(p, 0.0) - before.get(p, 0.0) for p in ("dns", "connect")
                )
                _record("tls", max(0.0, time.monotonic() - start - tcp))
        der = (
            self.sock.getpeercert(binary_form=True)
            if isinstance(self.sock, ssl.SSLSocket)
            else None
        )
        if timings is not None and der:
            timings.cert_not_after = der_not_after(der)


class _TimedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TimedHTTPConnection


class _TimedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TimedHTTPSConnection


class _TimedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _TimedHTTPPool, "https": _TimedHTTPSPool}


def timed_session() -> requests.Session:
    """A session that never retries, ignores proxy and ``.netrc`` settings from the environment,
    and whose connections report their phases to the thread's :func:`recording`."""
    session = requests.Session()
    session.trust_env = False
    adapter = _TimedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
