"""What the web-config tests share: a real server on 127.0.0.1:0, a PKI made on the spot, and
clients that report how each request ended (an HTTP status, or how the connection died).

Certificates come from tests/tls_certs.py; bcrypt costs are 4 except where CPU time is the
evidence.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.collector import Deadline
from exporter.scrape import Scraper
from exporter.web import WebConfigError, WebConfigGate, load_web_config
from tests.tls_certs import Issued, issue

TLS = """
tls_server_config:
  cert_file: server.crt
  key_file: server.key
"""
MTLS = TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"


def bcrypt_hash(password: str, cost: int = 4) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()


class Value:
    """A collector with one gauge, so a 200 is shown to carry the real /metrics."""

    name = "probe"

    def collect(self, deadline: Deadline) -> list[Metric]:
        return [GaugeMetricFamily("customer_sync_probe_value", "test", value=42.0)]


@dataclass
class Server:
    server: Any
    scraper: Scraper
    config: Path | None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def gate(self) -> WebConfigGate:
        app = self.server.get_app()
        assert isinstance(app, WebConfigGate)
        return app

    def url(self, path: str = "/metrics", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


@dataclass
class PKI:
    dir: Path
    ca: Issued
    server: Issued
    ca_file: Path

    def client(self, name: str = "client", **kwargs: Any) -> tuple[Path, Path]:
        return issue(self.ca, name, client=True, **kwargs).write(self.dir, name)


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    peer_der: bytes
    version: str
    cipher: str


def client_context(pki: PKI, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=pki.ca.cert_pem)  # not ca.crt: tests rotate it
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def https_get(port: int, ctx: ssl.SSLContext, path: str = "/metrics",
              headers: dict[str, str] | None = None) -> Answer:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    try:
        conn.connect()
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        der = sock.getpeercert(binary_form=True) or b""
        version = sock.version() or ""
        cipher = (sock.cipher() or ("",))[0]
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return Answer(resp.status, resp.msg, resp.read(), der, version, cipher)
    finally:
        conn.close()


def refusal(port: int, ctx: ssl.SSLContext, path: str = "/metrics") -> Exception | None:
    """How the connection died before any HTTP answer, or None if it got one."""
    try:
        https_get(port, ctx, path)
    except (OSError, http.client.HTTPException) as exc:
        return exc
    return None


def refused(port: int, ctx: ssl.SSLContext, path: str = "/metrics") -> bool:
    return refusal(port, ctx, path) is not None


def first_read(port: int, ctx: ssl.SSLContext) -> bytes | Exception:
    """Handshake, then read without writing: a TLS alert from the server surfaces here."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        try:
            return tls.recv(1)
        except OSError as exc:
            return exc


def write(directory: Path, text: str) -> Path:
    path = directory / "web.yml"
    path.write_text(textwrap.dedent(text))
    return path


def load_errors(directory: Path, text: str) -> list[str]:
    with pytest.raises(WebConfigError) as info:
        load_web_config(write(directory, text))
    return info.value.errors
