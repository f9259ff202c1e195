"""The exporter-toolkit web config against a real server on 127.0.0.1:0 and real TLS clients.

Certificates are made per test (tests/tls_certs.py): CAs, server and client certificates, expired
ones and ones from a foreign CA. bcrypt costs are 4 except where CPU time is the evidence.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import socket
import ssl
import statistics
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
from prometheus_client.core import GaugeMetricFamily, Metric
from structlog.testing import capture_logs

from exporter.collector import Deadline
from exporter.http import ExporterApp, make_http_server, serve_in_thread
from exporter.scrape import Scraper
from exporter.webconfig import (
    BasicAuth,
    TokenBucket,
    WebConfigError,
    WebConfigGate,
    _go_duration,
    load_web_config,
    parse_basic,
)
from tests.tls_certs import Issued, atomic_write, issue, make_ca


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
    config: Path

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


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    running: list[Server] = []

    def _start(config: str, *, health_without_auth: bool = False) -> Server:
        path = tmp_path / "web.yml"
        atomic_write(path, textwrap.dedent(config))
        scraper = Scraper([Value()], 5.0, process_collector=False)
        server = make_http_server("127.0.0.1:0", ExporterApp(scraper), web_config_file=path,
                                  health_without_auth=health_without_auth)
        serve_in_thread(server, poll_interval=0.02)
        running.append(Server(server, scraper, path))
        return running[-1]

    yield _start
    for s in running:
        s.server.shutdown()
        s.server.server_close()
        s.scraper.close()


@dataclass
class PKI:
    dir: Path
    ca: Issued
    server: Issued
    ca_file: Path

    def client(self, name: str = "client", **kwargs: Any) -> tuple[Path, Path]:
        return issue(self.ca, name, client=True, **kwargs).write(self.dir, name)


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    ca = make_ca("Exporter Test CA")
    server = issue(ca, "exporter")
    server.write(tmp_path, "server")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(ca.cert_pem)
    return PKI(tmp_path, ca, server, ca_file)


TLS = """
tls_server_config:
  cert_file: server.crt
  key_file: server.key
"""


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


# --- loading and strict validation --------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(textwrap.dedent(text))
    return path


def load_errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(WebConfigError) as info:
        load_web_config(write(tmp_path, text))
    return info.value.errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  bogus: 1\n",
         "web.yml:4: tls_server_config.bogus: unknown key"),
        ("basic_auth_users: {}\nunknown_top: 1\n", "web.yml:2: unknown_top: unknown key"),
        ("http_server_config:\n  headers:\n    X-Powered-By: me\n",
         "web.yml:3: http_server_config.headers.X-Powered-By: HTTP header 'X-Powered-By' can "
         "not be configured"),
        ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
         "web.yml:3: http_server_config.headers.X-Frame-Options: Input should be '', 'deny' or "
         "'sameorigin'"),
        ("http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
         "web.yml:3: http_server_config.headers.X-Content-Type-Options: Input should be"),
        ("http_server_config:\n  http2: 'yes'\n", "web.yml:2: http_server_config.http2:"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS14\n",
         "web.yml:4: tls_server_config.min_version: Input should be 'TLS10', 'TLS11', 'TLS12' "
         "or 'TLS13'"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n",
         "web.yml:4: tls_server_config.client_auth_type: Input should be"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_FAKE]\n",
         "web.yml:4: tls_server_config.cipher_suites[0]: unknown cipher suite 'TLS_FAKE'"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [P999]\n",
         "web.yml:4: tls_server_config.curve_preferences[0]: unknown curve 'P999'"),
        ("rate_limit:\n  interval: 1d\n  burst: 2\n",
         "web.yml:2: rate_limit.interval: must be a Go duration"),
        ("rate_limit:\n  interval: 1s\n", "web.yml:1: rate_limit.burst: must be at least 1"),
        ("- a\n- b\n", "web.yml:1: (top level): the file must be a mapping of keys"),
        ("basic_auth_users:\n  alice: [1\n", "web.yml:3: (syntax): invalid YAML"),
    ],
)
def test_strict_schema_errors_name_file_line_and_key(tmp_path: Path, text: str,
                                                     expected: str) -> None:
    errors = load_errors(tmp_path, text)
    assert any(e.startswith(str(tmp_path / expected.split(":", 1)[0]))
               and expected.split(":", 1)[1] in e for e in errors), errors


@pytest.mark.parametrize(
    ("tls_extra", "key", "message"),
    [
        ("client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.crt",
         "client_auth_type", "RequireAnyClientCert (a client certificate accepted without "
         "verification) is not supported"),
        ("client_auth_type: RequireClientCert\n  client_ca_file: ca.crt",
         "client_auth_type", "is not supported"),
        ("client_ca_file: ca.crt", "client_auth_type",
         "client CAs are configured without a client auth policy"),
        ("client_auth_type: RequireAndVerifyClientCert", "client_auth_type",
         "needs client_ca_file"),
        ("client_auth_type: VerifyClientCertIfGiven", "client_auth_type", "needs client_ca_file"),
        ("client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n"
         "  client_allowed_sans: [x]", "client_allowed_sans",
         "requires client_auth_type RequireAndVerifyClientCert"),
        ("min_version: TLS13\n  max_version: TLS12", "min_version",
         "TLS13 is above max_version TLS12"),
        ("curve_preferences: [X25519, CurveP256]", "curve_preferences", "at most one curve"),
        ("cert: inline", "cert_file", "set either cert or cert_file, not both"),
        ("client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: missing.crt",
         "client_ca_file", "cannot load client CA certificates"),
    ],
)
def test_tls_rules(pki: PKI, tls_extra: str, key: str, message: str) -> None:
    text = f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  {tls_extra}\n"
    errors = load_errors(pki.dir, text)
    assert any(f"tls_server_config.{key}: " in e and message in e for e in errors), errors


def test_missing_or_mismatched_certificate_files(pki: PKI) -> None:
    errors = load_errors(pki.dir, "tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n")
    assert errors[0].startswith(f"{pki.dir / 'web.yml'}:2: tls_server_config.cert_file: "
                                "cannot load the certificate and key")
    other = issue(pki.ca, "other")
    other.write(pki.dir, "other")
    errors = load_errors(pki.dir, "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n")
    assert "cannot load the certificate and key" in errors[0]
    errors = load_errors(pki.dir, "tls_server_config:\n  client_auth_type: NoClientCert\n")
    assert any("missing one of cert or cert_file" in e for e in errors)
    assert any("missing one of key or key_file" in e for e in errors)


def test_bad_bcrypt_hash_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    marker = "S3CRET-MARKER-not-a-hash"
    errors = load_errors(tmp_path, f"basic_auth_users:\n  alice: {bcrypt_hash('x')}\n"
                                   f"  bob: {marker}\n")
    assert len(errors) == 1
    assert errors[0].startswith(f"{tmp_path / 'web.yml'}:3: basic_auth_users.bob: is not a "
                                "bcrypt hash")
    assert marker not in errors[0]


def test_crlf_in_a_header_value_is_rejected(tmp_path: Path) -> None:
    errors = load_errors(tmp_path, 'http_server_config:\n  headers:\n'
                                   '    Content-Security-Policy: "a\\r\\nSet-Cookie: x"\n')
    assert "cannot contain a line break" in errors[0]


def test_empty_file_means_plain_http_without_auth(start: Any) -> None:
    s = start("")
    r = requests.get(s.url(), timeout=5)
    assert r.status_code == 200
    assert "customer_sync_probe_value 42.0" in r.text
    assert s.server.tls_enabled is False


def test_full_toolkit_example_loads(pki: PKI) -> None:
    pki.client()
    text = f"""
    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      client_allowed_sans: [scraper.example]
      min_version: TLS12
      max_version: TLS13
      cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
      prefer_server_cipher_suites: true
      curve_preferences: [CurveP256]
    http_server_config:
      http2: false
      headers:
        Content-Security-Policy: default-src 'self'
        X-Frame-Options: deny
        X-Content-Type-Options: nosniff
        X-XSS-Protection: 1; mode=block
        Strict-Transport-Security: max-age=31536000
    basic_auth_users:
      alice: {bcrypt_hash("a")}
      bob: {bcrypt_hash("b").replace("$2b$", "$2y$")}
    rate_limit:
      interval: 1s
      burst: 20
    """
    settings = load_web_config(write(pki.dir, text))
    assert settings.tls is not None
    assert settings.client_cert_required
    assert settings.allowed_sans == frozenset({"scraper.example"})
    assert set(settings.users) == {"alice", "bob"}
    assert dict(settings.headers)["X-Frame-Options"] == "deny"
    assert settings.rate_limit == (1.0, 20)
    assert settings.files == (pki.dir / "server.crt", pki.dir / "server.key", pki.dir / "ca.crt")


def test_go_durations() -> None:
    assert _go_duration("1m30s") == 90.0
    assert _go_duration("250ms") == 0.25
    assert _go_duration("1.5h") == 5400.0
    assert _go_duration(0) == 0.0
    for bad in ("1d", "", "5", 5, True, "s"):
        with pytest.raises(ValueError):
            _go_duration(bad)


def test_parse_basic() -> None:
    assert parse_basic("Basic YWxpY2U6cGE6c3M=") == ("alice", b"pa:ss")
    assert parse_basic("basic YWxpY2U6") == ("alice", b"")
    for bad in (None, "", "Bearer abc", "Basic !!!", "Basic YWxpY2U="):
        assert parse_basic(bad) is None


# --- TLS ------------------------------------------------------------------------------------------


def test_tls_serves_metrics_with_the_configured_certificate(start: Any, pki: PKI) -> None:
    s = start(TLS)
    assert s.server.tls_enabled
    r = requests.get(s.url(scheme="https"), verify=str(pki.ca_file), timeout=5)
    assert r.status_code == 200
    assert "customer_sync_probe_value 42.0" in r.text
    answer = https_get(s.port, client_context(pki))
    assert answer.peer_der == pki.server.der
    assert answer.version == "TLSv1.3"  # default max_version TLS13
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(s.url(scheme="http"), timeout=5)  # plain HTTP to a TLS port


def test_min_version_is_enforced(start: Any, pki: PKI) -> None:
    s = start(TLS + "  min_version: TLS13\n")
    old = client_context(pki)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    assert refused(s.port, old)
    assert https_get(s.port, client_context(pki)).version == "TLSv1.3"


def test_max_version_is_enforced(start: Any, pki: PKI) -> None:
    s = start(TLS + "  max_version: TLS12\n")
    assert https_get(s.port, client_context(pki)).version == "TLSv1.2"
    new_only = client_context(pki)
    new_only.minimum_version = ssl.TLSVersion.TLSv1_3
    assert refused(s.port, new_only)


def test_cipher_suites_restrict_tls12(start: Any, pki: PKI) -> None:
    unrestricted = start(TLS + "  max_version: TLS12\n")
    default_choice = https_get(unrestricted.port, client_context(pki)).cipher
    s = start(TLS + "  max_version: TLS12\n"
                    "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n")
    assert default_choice != "ECDHE-ECDSA-AES128-GCM-SHA256"  # so the restriction shows
    assert https_get(s.port, client_context(pki)).cipher == "ECDHE-ECDSA-AES128-GCM-SHA256"
    other = client_context(pki)
    other.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384")
    assert refused(s.port, other)


@pytest.mark.parametrize(("prefer", "expected"), [("true", "ECDHE-ECDSA-AES128-GCM-SHA256"),
                                                  ("false", "ECDHE-ECDSA-AES256-GCM-SHA384")])
def test_prefer_server_cipher_suites(start: Any, pki: PKI, prefer: str, expected: str) -> None:
    s = start(TLS + "  max_version: TLS12\n"
                    "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,"
                    " TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n"
                    f"  prefer_server_cipher_suites: {prefer}\n")
    ctx = client_context(pki)
    ctx.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256")
    assert https_get(s.port, ctx).cipher == expected


def test_curve_preferences_restrict_the_key_exchange(start: Any, pki: PKI) -> None:
    s = start(TLS + "  curve_preferences: [CurveP384]\n")
    p256 = client_context(pki)
    p256.set_ecdh_curve("prime256v1")
    assert refused(s.port, p256)
    p384 = client_context(pki)
    p384.set_ecdh_curve("secp384r1")
    assert https_get(s.port, p384).status == 200
    control = start(TLS)  # without the key the same P-256-only client is served
    assert https_get(control.port, p256).status == 200


def test_inline_certificate_key_and_client_ca(start: Any, pki: PKI) -> None:
    indent = "\n" + " " * 4
    client = pki.client()
    s = start(
        "tls_server_config:\n"
        f"  cert: |{indent}{pki.server.cert_pem.strip().replace(chr(10), indent)}\n"
        f"  key: |{indent}{pki.server.key_pem.strip().replace(chr(10), indent)}\n"
        f"  client_ca: |{indent}{pki.ca.cert_pem.strip().replace(chr(10), indent)}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
    )
    answer = https_get(s.port, client_context(pki, client))
    assert (answer.status, answer.peer_der) == (200, pki.server.der)
    assert refused(s.port, client_context(pki))


def test_expired_server_certificate_is_served_and_refused_by_verifying_clients(
    start: Any, pki: PKI
) -> None:
    # Like the toolkit, an expired certificate loads; clients that verify refuse it.
    issue(pki.ca, "exporter", expired=True).write(pki.dir, "server")
    s = start(TLS)
    with pytest.raises(requests.exceptions.SSLError, match="certificate has expired"):
        requests.get(s.url(scheme="https"), verify=str(pki.ca_file), timeout=5)


# --- client certificates -------------------------------------------------------------------------

MTLS = TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"


def test_require_and_verify_client_cert(start: Any, pki: PKI) -> None:
    good = pki.client("good")
    expired = pki.client("expired", expired=True)
    foreign_ca = make_ca("Someone Else's CA")
    wrong_ca = issue(foreign_ca, "intruder", client=True).write(pki.dir, "intruder")
    server_cert_as_client = (pki.dir / "server.crt", pki.dir / "server.key")  # no clientAuth EKU
    s = start(MTLS)
    # As in Go, a missing certificate fails the handshake itself (a TLS alert, not a hang-up).
    missing = first_read(s.port, client_context(pki))
    assert isinstance(missing, ssl.SSLError)
    assert "CERTIFICATE_REQUIRED" in str(missing)
    assert refused(s.port, client_context(pki))
    assert refused(s.port, client_context(pki, wrong_ca))
    assert refused(s.port, client_context(pki, expired))
    assert refused(s.port, client_context(pki, server_cert_as_client))
    answer = https_get(s.port, client_context(pki, good))
    assert answer.status == 200
    assert b"customer_sync_probe_value 42.0" in answer.body


def test_client_allowed_sans(start: Any, pki: PKI) -> None:
    s = start(MTLS + "  client_allowed_sans: [scraper.example, 10.0.0.7, spiffe://ns/prom]\n")
    by_dns = pki.client("dns", sans=("scraper.example",))
    by_ip = pki.client("ip", sans=("10.0.0.7",))
    by_uri = pki.client("uri", sans=("spiffe://ns/prom",))
    other = pki.client("other", sans=("other.example", "10.0.0.8"))
    for cert in (by_dns, by_ip, by_uri):
        assert https_get(s.port, client_context(pki, cert)).status == 200, cert
    assert refused(s.port, client_context(pki, other))


def test_verify_client_cert_if_given(start: Any, pki: PKI) -> None:
    s = start(TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n")
    wrong_ca = issue(make_ca("Foreign"), "intruder", client=True).write(pki.dir, "intruder")
    assert https_get(s.port, client_context(pki)).status == 200
    assert https_get(s.port, client_context(pki, pki.client())).status == 200
    assert refused(s.port, client_context(pki, wrong_ca))


def test_request_client_cert_admits_like_no_client_cert(start: Any, pki: PKI) -> None:
    s = start(TLS + "  client_auth_type: RequestClientCert\n")
    assert https_get(s.port, client_context(pki)).status == 200


def test_health_without_auth_with_mtls(start: Any, pki: PKI) -> None:
    s = start(MTLS, health_without_auth=True)
    probe = client_context(pki)  # a container probe: no client certificate
    assert https_get(s.port, probe, "/health/live").status == 200
    assert https_get(s.port, probe, "/health/ready").status == 200
    for path in ("/metrics", "/", "/nope"):
        answer = https_get(s.port, probe, path)
        assert answer.status == 403, path
        assert b"customer_sync" not in answer.body
    wrong_ca = issue(make_ca("Foreign"), "intruder", client=True).write(pki.dir, "intruder")
    assert refused(s.port, client_context(pki, wrong_ca), "/health/live")  # still verified
    assert https_get(s.port, client_context(pki, pki.client())).status == 200


# --- basic auth ----------------------------------------------------------------------------------


def test_basic_auth(start: Any) -> None:
    s = start(f"basic_auth_users:\n  alice: {bcrypt_hash('wonderland')}\n")
    for auth in (None, ("alice", "wrong"), ("mallory", "wonderland"), ("alice", "")):
        r = requests.get(s.url(), auth=auth, timeout=5)
        assert r.status_code == 401, auth
        assert r.headers["WWW-Authenticate"] == "Basic"
        assert "customer_sync" not in r.text
    r = requests.get(s.url(), auth=("alice", "wonderland"), timeout=5)
    assert r.status_code == 200
    assert "customer_sync_probe_value 42.0" in r.text
    # Without the flag, health endpoints are protected like everything else.
    assert requests.get(s.url("/health/live"), timeout=5).status_code == 401


def test_health_without_auth_with_basic_auth(start: Any) -> None:
    s = start(f"basic_auth_users:\n  alice: {bcrypt_hash('pw')}\n", health_without_auth=True)
    assert requests.get(s.url("/health/live"), timeout=5).status_code == 200
    assert requests.get(s.url("/health/ready"), timeout=5).status_code == 200
    assert requests.get(s.url("/metrics"), timeout=5).status_code == 401
    assert requests.get(s.url("/"), timeout=5).status_code == 401
    assert requests.get(s.url(), auth=("alice", "pw"), timeout=5).status_code == 200


def test_passwords_longer_than_72_bytes_are_not_truncated(start: Any) -> None:
    password = "p" * 72
    s = start(f"basic_auth_users:\n  alice: {bcrypt_hash(password)}\n")
    assert requests.get(s.url(), auth=("alice", password), timeout=5).status_code == 200
    assert requests.get(s.url(), auth=("alice", password + "X"), timeout=5).status_code == 401


def _cpu_per_request(url: str, auths: list[tuple[str, str] | None]) -> list[float]:
    out = []
    for auth in auths:
        t = time.process_time()  # this process: client and server threads alike
        r = requests.get(url, auth=auth, timeout=10)
        out.append(time.process_time() - t)
        assert r.status_code == 401
    return out


def test_unknown_user_costs_a_full_bcrypt_like_a_known_one(start: Any) -> None:
    cost = 10  # high enough that one comparison dwarfs a request's own CPU
    hashed = bcrypt_hash("right-password", cost)
    t = time.process_time()
    bcrypt.checkpw(b"probe", hashed.encode())
    one_bcrypt = time.process_time() - t  # ground truth, measured here, not by our code
    s = start(f"basic_auth_users:\n  alice: {hashed}\n")
    no_creds = _cpu_per_request(s.url(), [None] * 3)
    unknown = _cpu_per_request(s.url(), [("nobody", f"guess-{i}") for i in range(3)])
    known = _cpu_per_request(s.url(), [("alice", f"guess-{i}") for i in range(3)])
    assert statistics.median(no_creds) < 0.3 * one_bcrypt
    assert statistics.median(unknown) > 0.6 * one_bcrypt
    assert statistics.median(known) > 0.6 * one_bcrypt
    assert 0.5 < statistics.median(unknown) / statistics.median(known) < 2.0
    assert s.gate.auth.bcrypt_runs == 6


def test_bcrypt_results_are_cached(start: Any) -> None:
    hashed = bcrypt_hash("right-password", 10)
    t = time.process_time()
    bcrypt.checkpw(b"probe", hashed.encode())
    one_bcrypt = time.process_time() - t
    s = start(f"basic_auth_users:\n  alice: {hashed}\n")
    cpu = []
    for _ in range(3):
        t = time.process_time()
        assert requests.get(s.url(), auth=("alice", "right-password"), timeout=10).ok
        cpu.append(time.process_time() - t)
    assert cpu[0] > 0.6 * one_bcrypt
    assert max(cpu[1:]) < 0.3 * one_bcrypt
    assert s.gate.auth.bcrypt_runs == 1
    # The cache is keyed by the password too: a wrong one is not let in by the cached success.
    assert requests.get(s.url(), auth=("alice", "wrong"), timeout=10).status_code == 401


def test_bcrypt_cache_is_bounded_and_holds_no_plaintext(tmp_path: Path) -> None:
    settings = load_web_config(write(tmp_path, f"basic_auth_users:\n  alice: {bcrypt_hash('pw')}\n"))
    auth = BasicAuth(cache_size=3)
    passwords = [f"plaintext-{i}" for i in range(5)]
    for pw in passwords:
        header = "Basic " + base64.b64encode(f"alice:{pw}".encode()).decode()
        assert auth.check(settings, header) is False
    assert auth.cache_len() == 3
    keys = repr(list(auth._cache))
    assert not any(pw in keys or pw.encode().hex() in keys for pw in passwords)


# --- headers and rate limit ---------------------------------------------------------------------


def test_headers_on_every_answer(start: Any) -> None:
    s = start(f"""
    http_server_config:
      headers:
        Content-Security-Policy: default-src 'none'
        X-Frame-Options: sameorigin
        X-Content-Type-Options: nosniff
        X-XSS-Protection: "0"
        Strict-Transport-Security: max-age=60
    basic_auth_users:
      alice: {bcrypt_hash("pw")}
    """)
    expected = {
        "Content-Security-Policy": "default-src 'none'",
        "X-Frame-Options": "sameorigin",
        "X-Content-Type-Options": "nosniff",
        "X-XSS-Protection": "0",
        "Strict-Transport-Security": "max-age=60",
    }
    answers = [
        requests.get(s.url(), auth=("alice", "pw"), timeout=5),
        requests.get(s.url(), timeout=5),
        requests.get(s.url("/nope"), auth=("alice", "pw"), timeout=5),
    ]
    assert [r.status_code for r in answers] == [200, 401, 404]
    for r in answers:
        assert {k: r.headers.get(k) for k in expected} == expected


def test_blank_header_is_unset(start: Any) -> None:
    s = start("http_server_config:\n  headers:\n    X-Frame-Options: ''\n")
    assert "X-Frame-Options" not in requests.get(s.url(), timeout=5).headers


def test_rate_limit(start: Any) -> None:
    s = start("rate_limit:\n  interval: 1h\n  burst: 2\n", health_without_auth=True)
    codes = [requests.get(s.url(), timeout=5).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert requests.get(s.url("/health/live"), timeout=5).status_code == 200  # probes exempt


def test_token_bucket_refills_one_per_interval() -> None:
    now = [0.0]
    bucket = TokenBucket(2.0, 2, clock=lambda: now[0])
    assert [bucket.allow() for _ in range(3)] == [True, True, False]
    now[0] = 1.0
    assert bucket.allow() is False
    now[0] = 2.0
    assert bucket.allow() is True
    now[0] = 100.0
    assert [bucket.allow() for _ in range(3)] == [True, True, False]  # never above burst


# --- re-reading on change ------------------------------------------------------------------------


def test_users_change_without_restart(start: Any) -> None:
    s = start(f"basic_auth_users:\n  alice: {bcrypt_hash('old')}\n")
    assert requests.get(s.url(), auth=("alice", "old"), timeout=5).status_code == 200
    atomic_write(s.config, f"basic_auth_users:\n  bob: {bcrypt_hash('new')}\n")
    assert requests.get(s.url(), auth=("alice", "old"), timeout=5).status_code == 401
    assert requests.get(s.url(), auth=("bob", "new"), timeout=5).status_code == 200
    assert s.gate.source.reloads == 1


def test_broken_file_at_run_time_keeps_the_last_good_config(start: Any) -> None:
    s = start(f"basic_auth_users:\n  alice: {bcrypt_hash('pw')}\n")
    with capture_logs() as logs:
        atomic_write(s.config, "basic_auth_users:\n  alice: garbage\nsurprise: 1\n")
        for _ in range(3):
            assert requests.get(s.url(), auth=("alice", "pw"), timeout=5).status_code == 200
            assert requests.get(s.url(), timeout=5).status_code == 401
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1  # logged once per change, not once per request
    assert errors[0]["event"] == "web config is invalid; keeping the last good one"
    joined = "\n".join(errors[0]["errors"])
    assert f"{s.config}:2: basic_auth_users.alice: is not a bcrypt hash" in joined
    assert f"{s.config}:3: surprise: unknown key" in joined
    assert s.gate.source.reload_failures == 1
    atomic_write(s.config, f"basic_auth_users:\n  alice: {bcrypt_hash('fixed')}\n")
    assert requests.get(s.url(), auth=("alice", "fixed"), timeout=5).status_code == 200
    assert requests.get(s.url(), auth=("alice", "pw"), timeout=5).status_code == 401


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _alias_bomb() -> bytes:
    lines = ["x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("bad", ["latin1", "alias_bomb", "52mb"])
def test_unreadable_or_unbounded_file_at_run_time_keeps_the_last_good_config(
    start: Any, bad: str
) -> None:
    good = f"basic_auth_users:\n  alice: {bcrypt_hash('pw')}\n"
    s = start(good)
    if bad == "latin1":
        data = good.encode() + "# Prüfung\n".encode("latin-1")
    elif bad == "alias_bomb":
        data = good.encode() + _alias_bomb()
    else:
        data = good.encode() + b"#" + b"x" * 52_000_000 + b"\n"
    with capture_logs() as logs:
        _replace(s.config, data)
        for _ in range(3):
            assert requests.get(s.url(), auth=("alice", "pw"), timeout=5).status_code == 200
            assert requests.get(s.url(), timeout=5).status_code == 401
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1, errors  # once per change, not per request
    assert errors[0]["event"] == "web config is invalid; keeping the last good one"
    assert re.match(rf"{re.escape(str(s.config))}:\d+: \((file|size)\): ", errors[0]["errors"][0])
    assert s.gate.source.reload_failures == 1
    atomic_write(s.config, f"basic_auth_users:\n  alice: {bcrypt_hash('fixed')}\n")
    assert requests.get(s.url(), auth=("alice", "fixed"), timeout=5).status_code == 200


def test_an_unexpected_error_while_reloading_is_a_failed_reload_not_a_500(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import exporter.webconfig

    s = start(f"basic_auth_users:\n  alice: {bcrypt_hash('pw')}\n")
    real = exporter.webconfig.load_web_config
    failures = iter([RecursionError("deep")])

    def load(*args: Any, **kwargs: Any) -> Any:
        for exc in failures:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(exporter.webconfig, "load_web_config", load)
    with capture_logs() as logs:
        atomic_write(s.config, f"basic_auth_users:\n  bob: {bcrypt_hash('new')}\n")
        assert requests.get(s.url(), auth=("alice", "pw"), timeout=5).status_code == 200
    assert s.gate.source.reload_failures == 1
    errors = [e for e in logs if e["log_level"] == "error"]
    assert errors[0]["errors"] == [f"{s.config}:0: (internal): cannot load: RecursionError"]
    atomic_write(s.config, f"basic_auth_users:\n  bob: {bcrypt_hash('newer')}\n")
    assert requests.get(s.url(), auth=("bob", "newer"), timeout=5).status_code == 200


def test_headers_reload(start: Any) -> None:
    s = start("http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    assert requests.get(s.url(), timeout=5).headers["X-Frame-Options"] == "deny"
    atomic_write(s.config, "http_server_config:\n  headers:\n    X-Frame-Options: sameorigin\n")
    assert requests.get(s.url(), timeout=5).headers["X-Frame-Options"] == "sameorigin"


def test_certificate_rotation_without_restart(start: Any, pki: PKI) -> None:
    s = start(TLS)
    ctx = client_context(pki)
    assert https_get(s.port, ctx).peer_der == pki.server.der
    rotated = issue(pki.ca, "exporter-rotated")
    rotated.write(pki.dir, "server")  # web.yml itself is untouched
    assert https_get(s.port, ctx).peer_der == rotated.der
    assert s.gate.source.reloads == 1


def test_half_done_rotation_keeps_serving_the_old_pair(start: Any, pki: PKI) -> None:
    s = start(TLS)
    ctx = client_context(pki)
    rotated = issue(pki.ca, "exporter-rotated")
    with capture_logs() as logs:
        atomic_write(pki.dir / "server.crt", rotated.cert_pem)  # the key is not there yet
        assert https_get(s.port, ctx).peer_der == pki.server.der
    assert any(e["event"] == "web config is invalid; keeping the last good one" for e in logs)
    atomic_write(pki.dir / "server.key", rotated.key_pem)
    assert https_get(s.port, ctx).peer_der == rotated.der


def test_client_ca_rotation(start: Any, pki: PKI) -> None:
    s = start(MTLS)
    old_client = pki.client("old")
    assert https_get(s.port, client_context(pki, old_client)).status == 200
    new_ca = make_ca("New Client CA")
    new_client = issue(new_ca, "new", client=True).write(pki.dir, "new")
    atomic_write(pki.ca_file, new_ca.cert_pem)
    assert refused(s.port, client_context(pki, old_client))
    assert https_get(s.port, client_context(pki, new_client)).status == 200


def test_switching_tls_off_at_run_time_is_refused(start: Any, pki: PKI) -> None:
    s = start(TLS)
    with capture_logs() as logs:
        atomic_write(s.config, "basic_auth_users: {}\n")
        assert https_get(s.port, client_context(pki)).status == 200
    assert any("needs a restart" in line for e in logs for line in e.get("errors", []))


def test_broken_web_config_at_start_refuses_to_start(tmp_path: Path) -> None:
    path = write(tmp_path, "tls_server_config:\n  cert_file: missing.crt\n  key_file: x.key\n")
    scraper = Scraper([Value()], 5.0, process_collector=False)
    try:
        with pytest.raises(WebConfigError) as info:
            make_http_server("127.0.0.1:0", ExporterApp(scraper), web_config_file=path)
    finally:
        scraper.close()
    assert info.value.errors[0].startswith(f"{path}:2: tls_server_config.cert_file: ")
