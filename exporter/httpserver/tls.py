"""The TLS steps of a connection, non-blocking: wrap at accept, then one handshake step per
readiness event until it is done. The server decides what each outcome means for the connection.
"""

from __future__ import annotations

import enum
import socket
import ssl

import structlog

from exporter.web import WebSettings

log = structlog.get_logger(__name__)


class Step(enum.Enum):
    DONE = "done"
    WANT_READ = "want_read"
    WANT_WRITE = "want_write"
    FAILED = "failed"


def wrap(sock: socket.socket, settings: WebSettings, client: str) -> ssl.SSLSocket | None:
    """``sock`` as the server side of a TLS connection, handshake not begun; None if refused."""
    assert settings.tls is not None
    try:
        return settings.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    except (OSError, ValueError) as exc:
        log.debug("TLS setup failed", client=client, error=str(exc))
        return None


def handshake_step(sock: ssl.SSLSocket, client: str) -> Step:
    """Go on with the handshake as far as the socket allows."""
    try:
        sock.do_handshake()
    except ssl.SSLWantReadError:
        return Step.WANT_READ
    except ssl.SSLWantWriteError:
        return Step.WANT_WRITE
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        log.debug("TLS handshake failed", client=client, error=str(exc))
        return Step.FAILED
    return Step.DONE
