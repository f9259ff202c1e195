"""The 1C probe against the real local stand-in server over HTTP and HTTPS, with real faults."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
import urllib3.exceptions as u3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.core import Metric
from requests.adapters import BaseAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

from collectors.disk import DiskCollector
from collectors.onec import OneCCollector
from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import DiskConfig, LogDirConfig, OneCConfig
from exporter.demo.onec import Mode, OneCStandIn
from exporter.scrape import Scraper
from tests.exposition import promtool_problems, samples, value

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


# --- certificates -----------------------------------------------------------------------------


@dataclass
class Cert:
    cert: Path
    key: Path
    not_after: float


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(
    directory: Path,
    stem: str,
    subject: str,
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    not_before: dt.datetime,
    not_after: dt.datetime,
    ca: bool = False,
) -> tuple[Cert, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_cert.subject if issuer_cert else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer_key, hashes.SHA256())
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Cert(cert_path, key_path, cert.not_valid_after_utc.timestamp()), cert, key


@dataclass
class Certs:
    ca: Cert
    valid: Cert
    expired: Cert
    self_signed: Cert


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("certs")
    day = dt.timedelta(days=1)
    ca, ca_cert, ca_key = _write(
        d, "ca", "Test 1C CA", issuer=None, not_before=NOW - day, not_after=NOW + 365 * day,
        ca=True,
    )  # fmt: skip
    valid, *_ = _write(
        d, "valid", "onec.local", issuer=(ca_cert, ca_key), not_before=NOW - day,
        not_after=NOW + 47 * day,
    )  # fmt: skip
    expired, *_ = _write(
        d, "expired", "onec.local", issuer=(ca_cert, ca_key), not_before=NOW - 30 * day,
        not_after=NOW - day,
    )  # fmt: skip
    self_signed, *_ = _write(
        d, "self", "onec.local", issuer=None, not_before=NOW - day, not_after=NOW + 90 * day
    )
    return Certs(ca, valid, expired, self_signed)


# --- helpers ----------------------------------------------------------------------------------




def phases(families: list[Metric]) -> dict[str, float]:
    return {
        k[0]: v for k, v in samples(families, "customer_sync_onec_probe_duration_seconds").items()
    }


def probe(
    url: str, deadline: float = 3.0, **config: Any
) -> tuple[list[Metric], Reason | None, str]:
    collector = OneCCollector(OneCConfig(url=url, **config))
    return run(collector, deadline)


def run(collector: OneCCollector, deadline: float = 3.0) -> tuple[list[Metric], Reason | None, str]:
    try:
        return collector.collect(Deadline.after(deadline)), None, ""
    except CollectorError as exc:
        return exc.partial, exc.reason, exc.message


# --- plain HTTP -------------------------------------------------------------------------------


def test_healthy_service_one_request_with_phases(onec: OneCStandIn) -> None:
    onec.set_mode(Mode.SLOW, slow_seconds=0.2)  # a known server-side delay for "processing"
    start = time.monotonic()
    families, reason, message = probe(onec.url, json_field="status", json_value="ok")
    wall = time.monotonic() - start
    assert reason is None, message
    assert value(families, "customer_sync_onec_up") == 1
    assert value(families, "customer_sync_onec_http_status_code") == 200
    assert onec.requests == 1  # one probe, no retries
    p = phases(families)
    assert set(p) == {"dns", "connect", "processing", "transfer", "total"}  # no tls on http
    assert 0.2 <= p["processing"] < p["total"] <= wall
    assert p["dns"] + p["connect"] + p["processing"] + p["transfer"] <= p["total"] + 1e-6
    assert p["connect"] > 0
    assert not samples(families, "customer_sync_onec_tls_cert_expiry_timestamp_seconds")


def test_http_500_is_http_status(onec: OneCStandIn) -> None:
    onec.set_mode(Mode.ERROR)
    families, reason, message = probe(onec.url)
    assert reason is Reason.HTTP_STATUS
    assert "HTTP 500" in message
    assert value(families, "customer_sync_onec_up") == 0
    assert value(families, "customer_sync_onec_http_status_code") == 500
    assert onec.requests == 1
    # 500 may be declared acceptable (e.g. a service that answers 500 while reindexing).
    _, reason, _ = probe(onec.url, expect_status=[200, 500])
    assert reason is None


def test_slow_past_the_deadline_times_out_before_it(onec: OneCStandIn) -> None:
    onec.set_mode(Mode.SLOW, slow_seconds=30)
    collector = OneCCollector(OneCConfig(url=onec.url))
    start = time.monotonic()
    families, reason, message = run(collector, deadline=0.8)
    elapsed = time.monotonic() - start
    assert reason is Reason.TIMEOUT, message
    assert elapsed < 0.8
    assert value(families, "customer_sync_onec_http_status_code") == 0
    assert value(families, "customer_sync_onec_up") == 0
    assert phases(families)["total"] == pytest.approx(elapsed, abs=0.05)
    # The abandoned probe is still waiting: the next scrape does not pile another one on.
    _, reason, message = run(collector, deadline=0.5)
    assert reason is Reason.TIMEOUT and "previous probe" in message
    assert onec.requests == 1
    onec.set_mode(Mode.OK)  # 1C answers again; the collector recovers by itself
    end = time.monotonic() + 3
    while True:
        families, reason, _ = run(collector)
        if reason is None or time.monotonic() > end:
            break
        time.sleep(0.05)
    assert reason is None
    assert value(families, "customer_sync_onec_up") == 1


def test_down_is_connect_and_recovers_on_the_same_port(onec: OneCStandIn) -> None:
    collector = OneCCollector(OneCConfig(url=onec.url))
    onec.set_mode(Mode.DOWN)
    families, reason, message = run(collector)
    assert reason is Reason.CONNECT, message
    assert "refused" in message.lower()
    assert value(families, "customer_sync_onec_http_status_code") == 0
    onec.set_mode(Mode.OK)
    families, reason, _ = run(collector)
    assert reason is None and value(families, "customer_sync_onec_up") == 1


def test_connection_closed_without_answer_is_connect(onec: OneCStandIn) -> None:
    onec.set_mode(Mode.RESET)
    families, reason, message = probe(onec.url)
    assert reason is Reason.CONNECT, message
    assert value(families, "customer_sync_onec_http_status_code") == 0


def test_unknown_host_is_dns() -> None:
    families, reason, message = probe("http://onec-freesport.invalid:8080/freesport/hs/ping")
    assert reason is Reason.DNS, message
    assert value(families, "customer_sync_onec_up") == 0
    assert phases(families)["connect"] == 0


def test_assertions(onec: OneCStandIn) -> None:
    onec.set_mode(Mode.DEGRADED)  # HTTP 200, but {"status": "maintenance"}
    _, reason, message = probe(onec.url, json_field="status", json_value="ok")
    assert reason is Reason.ASSERTION
    assert "'maintenance'" in message
    onec.set_mode(Mode.OK)
    _, reason, _ = probe(onec.url, json_field="status", json_value="ok")
    assert reason is None
    _, reason, message = probe(onec.url, json_field="data.state")
    assert reason is Reason.ASSERTION and "missing" in message
    _, reason, _ = probe(onec.url, body_regex=r'"infobase":\s*"freesport"')
    assert reason is None
    families, reason, _ = probe(onec.url, body_regex=r"nothing like this")
    assert reason is Reason.ASSERTION
    assert value(families, "customer_sync_onec_http_status_code") == 200
    assert value(families, "customer_sync_onec_up") == 0


def test_wrong_path_is_http_status(onec: OneCStandIn) -> None:
    _, reason, message = probe(onec.url.replace("/ping", "/nope"))
    assert reason is Reason.HTTP_STATUS and "HTTP 404" in message


# --- credentials ------------------------------------------------------------------------------


def test_basic_auth_and_secret_never_shown(tmp_path: Path) -> None:
    password = "pa55-" + "x" * 12
    with OneCStandIn(username="exporter", password=password) as server:
        _, reason, message = probe(server.url)
        assert reason is Reason.AUTH and "HTTP 401" in message
        _, reason, message = probe(server.url, username="exporter", password="wrong")
        assert reason is Reason.AUTH
        secret = tmp_path / "onec-password"
        secret.write_text(password + "\n")
        families, reason, message = probe(server.url, username="exporter", password_file=secret)
        assert reason is None, message
        assert value(families, "customer_sync_onec_up") == 1
        collector = OneCCollector(OneCConfig(url=server.url, username="exporter",
                                             password_file=secret))  # fmt: skip
        assert password not in repr(collector.config)


class _RecordingHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, AuthRecorder)
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        arrived: tuple[str, str] | None = None
        if scheme == "Basic":
            # RFC 7617: user-id ":" password, UTF-8; strict, so Latin-1 or mojibake fails here.
            user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
            arrived = (user, password)
        server.arrived.append(arrived)
        ok = server.expected is None or arrived == server.expected
        body = server.body if ok else b'{"error": "unauthorized"}'
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class AuthRecorder(ThreadingHTTPServer):
    """A 1C stand-in that decodes each request's Basic credentials and keeps what arrived;
    it answers ``body`` to the ``expected`` credentials (to anyone if None), else 401."""

    daemon_threads = True

    def __init__(self, expected: tuple[str, str] | None = None,
                 body: bytes = b'{"status": "ok"}') -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.expected = expected
        self.body = body
        self.arrived: list[tuple[str, str] | None] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}/freesport/hs/exchange/ping"

    def __enter__(self) -> AuthRecorder:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


CREDENTIALS = {
    # The default administrator of a Russian 1C base, and its usual kind of password.
    "cyrillic": ("Администратор", "пароль1С"),
    # Latin and Cyrillic mixed, with the characters a URL must percent-encode (':' only in the
    # password: RFC 7617 forbids it in the user-id).
    "mixed": ("Обмен_exchange", "p@ss:w0rd/пароль 100%#?"),
    "ascii": ("exporter", "pa55-word-4711"),
}


def _with_userinfo(url: str, user: str, password: str) -> str:
    return url.replace("://", f"://{quote(user, safe='')}:{quote(password, safe='')}@", 1)


@pytest.mark.parametrize("form", ["keys", "password_file", "url"])
@pytest.mark.parametrize("kind", sorted(CREDENTIALS))
def test_basic_credentials_arrive_intact_as_utf8(kind: str, form: str, tmp_path: Path) -> None:
    user, password = CREDENTIALS[kind]
    with AuthRecorder(expected=(user, password)) as server:
        if form == "keys":
            config: dict[str, Any] = {"url": server.url, "username": user, "password": password}
        elif form == "password_file":
            secret = tmp_path / "onec-password"
            secret.write_text(password + "\n", encoding="utf-8")
            config = {"url": server.url, "username": user, "password_file": secret}
        else:
            config = {"url": _with_userinfo(server.url, user, password)}
        collector = OneCCollector(OneCConfig(**config))
        families, reason, message = run(collector)
        assert server.arrived == [(user, password)]  # one request, the credentials as written
        assert reason is None, message
        assert value(families, "customer_sync_onec_up") == 1
        # A rejected password: the failure is auth, and names neither secret.
        wrong = password[::-1] + "x"
        if form == "url":
            config = {"url": _with_userinfo(server.url, user, wrong)}
        else:
            config = {"url": server.url, "username": user, "password": wrong}
        _, reason, message = run(OneCCollector(OneCConfig(**config)))
        assert server.arrived[-1] == (user, wrong)
        assert reason is Reason.AUTH and "HTTP 401" in message
        for secret_text in (password, wrong, quote(password, safe=""), quote(wrong, safe="")):
            assert secret_text not in message
            assert secret_text not in collector.url  # the request line carries no user info
        if form != "url":
            assert password not in repr(collector.config)  # a SecretStr


def test_cyrillic_url_credentials_written_unencoded_arrive_intact() -> None:
    user, password = CREDENTIALS["cyrillic"]
    with AuthRecorder(expected=(user, password)) as server:
        url = server.url.replace("://", f"://{user}:{password}@", 1)
        _, reason, message = run(OneCCollector(OneCConfig(url=url)))
        assert server.arrived == [(user, password)]
        assert reason is None, message


def test_url_credentials_never_in_messages_even_when_the_host_is_unreachable() -> None:
    user, password = CREDENTIALS["mixed"]
    url = _with_userinfo(f"http://127.0.0.1:{_closed_port()}/hs/ping", user, password)
    _, reason, message = run(OneCCollector(OneCConfig(url=url)))
    assert reason is Reason.CONNECT, message
    assert password not in message and quote(password, safe="") not in message


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_json_nested_past_what_python_parses_is_assertion(depth: int) -> None:
    body = b'{"status": ' + b"[" * depth + b"]" * depth + b"}"
    assert len(body) < 1024 * 1024  # all of it is read: the probe reads up to 1 MiB
    with AuthRecorder(body=body) as server:
        families, reason, message = probe(server.url, json_field="status", json_value="ok")
    assert reason is Reason.ASSERTION
    assert message.endswith(": body is JSON nested too deep to read")
    assert value(families, "customer_sync_onec_up") == 0
    assert value(families, "customer_sync_onec_http_status_code") == 200


def test_json_deep_but_parseable_compares_without_error() -> None:
    body = b'{"data": {"status": ' + b"[" * 500 + b"]" * 500 + b"}}"
    with AuthRecorder(body=body) as server:
        _, reason, message = probe(server.url, json_field="data.status", json_value="ok")
    assert reason is Reason.ASSERTION and "is '[[[[" in message, message


def test_bearer_token() -> None:
    with OneCStandIn(token="tok-123") as server:
        _, reason, _ = probe(server.url, token="tok-999")
        assert reason is Reason.AUTH
        _, reason, message = probe(server.url, token="tok-123")
        assert reason is None, message


def test_url_credentials_and_query_never_in_messages() -> None:
    _, reason, message = probe("http://user:hunter2@onec.invalid/base/hs/ping?key=abc123")
    assert reason is Reason.DNS
    assert "hunter2" not in message and "abc123" not in message


# --- failures no local server makes on demand ------------------------------------------------


class FailingTransport(BaseAdapter):
    """A requests transport that fails every request with one exception, built as requests
    and urllib3 build it: a connect timeout on loopback, a body cut short mid-chunk, a bug."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        self.sent.append(request)
        raise self.exc

    def close(self) -> None:
        pass


def failing(transport: FailingTransport) -> Callable[[], requests.Session]:
    def session() -> requests.Session:
        s = requests.Session()
        s.mount("http://", transport)
        return s

    return session


def _caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


POOL, CONN = HTTPConnectionPool("127.0.0.1", 1), HTTPConnection("127.0.0.1", 1)
SECRET_URL = "http://exporter:hunter2@127.0.0.1:1/hs/ping?key=abc123"
TRANSPORT_FAILURES: dict[str, tuple[Callable[[], BaseException], Reason, str]] = {
    "connect timeout": (lambda: requests.ConnectTimeout(u3.MaxRetryError(POOL, "/hs/ping", _caused(
        u3.ConnectTimeoutError(CONN, "Connection to 127.0.0.1 timed out. (connect timeout=1)"),
        TimeoutError("timed out")))), Reason.TIMEOUT, "timed out: TimeoutError: timed out"),
    "read timeout": (lambda: requests.ReadTimeout(u3.ReadTimeoutError(POOL, "/hs/ping",
        "Read timed out. (read timeout=1)")), Reason.TIMEOUT, "timed out: ReadTimeoutError: "
        "HTTPConnectionPool(host='127.0.0.1', port=1): Read timed out. (read timeout=1)"),
    # urllib3 derives NewConnectionError from ConnectTimeoutError: a refusal is no timeout.
    "refused": (lambda: requests.ConnectionError(u3.MaxRetryError(POOL, "/hs/ping", _caused(
        u3.NewConnectionError(CONN, "Failed to establish a new connection"),
        ConnectionRefusedError(111, "Connection refused")))), Reason.CONNECT,
        "connection failed: ConnectionRefusedError: [Errno 111] Connection refused"),
    "body cut short": (lambda: requests.exceptions.ChunkedEncodingError(
        u3.ProtocolError("Response ended prematurely")), Reason.CONNECT,
        "connection failed: ProtocolError: Response ended prematurely"),
    "tls alert": (lambda: requests.exceptions.SSLError(u3.MaxRetryError(POOL, "/hs/ping",
        u3.SSLError("[SSL: TLSV1_ALERT_INTERNAL_ERROR] tlsv1 alert internal error"))),
        Reason.TLS, "TLS failed: SSLError: [SSL: TLSV1_ALERT_INTERNAL_ERROR] tlsv1 alert "
        "internal error"),
    # The one library message that quotes the request URL: its query is scrubbed.
    "unparsable url": (lambda: requests.exceptions.InvalidURL(u3.LocationParseError(
        "http://127.0.0.1:1/hs/ping?key=abc123")), Reason.CONNECT,
        "connection failed: LocationParseError: Failed to parse: http://127.0.0.1:1/hs/ping?***"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(TRANSPORT_FAILURES))
def test_each_transport_failure_has_its_reason_and_a_secret_free_message(case: str) -> None:
    make, reason, expected = TRANSPORT_FAILURES[case]
    transport = FailingTransport(make())
    collector = OneCCollector(OneCConfig(url=SECRET_URL), session_factory=failing(transport))
    families, got, message = run(collector)
    assert (got, message) == (reason, f"http://127.0.0.1:1/hs/ping: {expected}")
    assert len(transport.sent) == 1  # one request, no retry
    assert value(families, "customer_sync_onec_up") == 0
    assert value(families, "customer_sync_onec_http_status_code") == 0
    assert phases(families)["total"] > 0


def test_a_bug_in_the_probe_is_internal_and_quotes_nothing() -> None:
    token = "tok-SECRET-4711"
    transport = FailingTransport(RuntimeError(f"unexpected header 'Bearer {token}'"))
    collector = OneCCollector(
        OneCConfig(url="http://127.0.0.1:1/hs/ping", token=token), session_factory=failing(transport)
    )
    families, reason, message = run(collector)
    assert (reason, message) == (Reason.INTERNAL, "http://127.0.0.1:1/hs/ping: RuntimeError")
    assert transport.sent[0].headers["Authorization"] == f"Bearer {token}"  # it was in play
    assert value(families, "customer_sync_onec_up") == 0


# --- HTTPS ------------------------------------------------------------------------------------


def test_https_valid_cert_reports_expiry_and_tls_phase(certs: Certs) -> None:
    with OneCStandIn(certfile=certs.valid.cert, keyfile=certs.valid.key) as server:
        assert server.url.startswith("https://127.0.0.1:")
        families, reason, message = probe(server.url, ca_file=certs.ca.cert)
    assert reason is None, message
    expiry = value(families, "customer_sync_onec_tls_cert_expiry_timestamp_seconds")
    assert expiry == certs.valid.not_after
    assert expiry == (NOW + dt.timedelta(days=47)).timestamp()
    p = phases(families)
    assert p["tls"] > 0
    assert p["dns"] + p["connect"] + p["tls"] + p["processing"] + p["transfer"] <= p["total"] + 1e-6


def test_self_signed_cert_is_tls_unless_verification_is_off(certs: Certs) -> None:
    with OneCStandIn(certfile=certs.self_signed.cert, keyfile=certs.self_signed.key) as server:
        families, reason, message = probe(server.url)
        assert reason is Reason.TLS, message
        assert "self-signed" in message or "self signed" in message
        assert value(families, "customer_sync_onec_http_status_code") == 0
        assert server.requests == 0  # the handshake failed, no HTTP request was made
        families, reason, message = probe(server.url, insecure_skip_verify=True)
    assert reason is None, message
    # Read from the raw certificate (no verification, so Python's getpeercert() gives nothing).
    expiry = value(families, "customer_sync_onec_tls_cert_expiry_timestamp_seconds")
    assert expiry == certs.self_signed.not_after


def test_missing_ca_file_is_config(certs: Certs, tmp_path: Path) -> None:
    with OneCStandIn(certfile=certs.valid.cert, keyfile=certs.valid.key) as server:
        _, reason, message = probe(server.url, ca_file=tmp_path / "no-such-ca.pem")
    assert reason is Reason.CONFIG, message
    assert "no-such-ca.pem" in message


def test_expired_cert_is_tls(certs: Certs) -> None:
    with OneCStandIn(certfile=certs.expired.cert, keyfile=certs.expired.key) as server:
        families, reason, message = probe(server.url, ca_file=certs.ca.cert)
    assert reason is Reason.TLS
    assert "expired" in message
    assert value(families, "customer_sync_onec_up") == 0


def test_hanging_1c_inside_a_real_scrape(onec: OneCStandIn, tmp_path: Path) -> None:
    """Prometheus allows 1.5 s: the scrape answers before 1.0 s with onec_up 0, reason timeout."""
    (tmp_path / "logs").mkdir()
    onec.set_mode(Mode.SLOW, slow_seconds=30)
    scraper = Scraper(
        [
            OneCCollector(OneCConfig(url=onec.url)),
            DiskCollector(DiskConfig(dirs=[LogDirConfig(name="logs", path=tmp_path / "logs")])),
        ],
        scrape_timeout=10,
        process_collector=False,
    )
    try:
        start = time.monotonic()
        families = scraper.scrape(scraper.deadline_for(1.5))
        elapsed = time.monotonic() - start
    finally:
        onec.set_mode(Mode.OK)
        scraper.close()
    assert elapsed < 1.0
    success = samples(families, "customer_sync_exporter_collector_success")
    assert success == {("onec",): 0, ("disk",): 1}
    failure = samples(families, "customer_sync_exporter_collector_failure")
    assert failure[("onec", "timeout")] == 1
    assert value(families, "customer_sync_onec_up") == 0  # the collector's own answer, in time
    assert value(families, "customer_sync_onec_http_status_code") == 0
    assert promtool_problems(families) == ""


def test_https_exposition_is_clean(certs: Certs) -> None:
    with OneCStandIn(certfile=certs.valid.cert, keyfile=certs.valid.key) as server:
        families, reason, _ = probe(server.url, ca_file=certs.ca.cert)
    assert reason is None
    assert promtool_problems(families) == ""
