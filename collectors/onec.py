"""One HTTP(S) probe per scrape to the 1C HTTP service, with phases, TLS expiry and a reason.

The probe uses ``requests`` on a fresh connection each time (so connect and TLS are measured
every scrape, as blackbox_exporter does), follows no redirects and never retries. Its socket
timeouts are the remaining scrape budget, and it runs in a helper thread that the collector
waits for only until the deadline, so even a hanging DNS lookup cannot hold the scrape. While an
abandoned probe is still running no second one is started. Proxy and ``.netrc`` settings from
the environment are ignored: the probe behaves the same wherever the exporter runs.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
import urllib3
from prometheus_client.core import GaugeMetricFamily, Metric
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    InsecureRequestWarning,
    NameResolutionError,
    NewConnectionError,
)
from urllib3.util import connection as urllib3_connection

from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import OneCConfig

MAX_BODY_BYTES = 1024 * 1024
_WAIT_MARGIN = 0.02  # seconds kept to build the answer after giving up on the probe
PHASES = ("dns", "connect", "tls", "processing", "transfer", "total")


# --- timing the connection --------------------------------------------------------------------


@dataclass
class ProbeResult:
    """What one probe saw; ``reason`` None means success."""

    status: int = 0
    phases: dict[str, float] = field(default_factory=dict)
    cert_not_after: float | None = None
    reason: Reason | None = None
    message: str = ""


_current = threading.local()  # the ProbeResult of the probe running in this thread


def _record(phase: str, seconds: float) -> None:
    result: ProbeResult | None = getattr(_current, "result", None)
    if result is not None:
        result.phases[phase] = result.phases.get(phase, 0.0) + seconds


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
            raise NewConnectionError(self, f"Failed to establish a new connection: {error}")
        finally:
            _record("connect", time.monotonic() - start)


class _TimedHTTPSConnection(HTTPSConnection, _TimedHTTPConnection):
    """Adds the TLS handshake time and the peer certificate's expiry."""

    def connect(self) -> None:
        result: ProbeResult | None = getattr(_current, "result", None)
        before = dict(result.phases) if result else {}
        start = time.monotonic()
        try:
            super().connect()
        finally:
            if result is not None:
                tcp = sum(
                    result.phases.get(p, 0.0) - before.get(p, 0.0) for p in ("dns", "connect")
                )
                _record("tls", max(0.0, time.monotonic() - start - tcp))
        der = (
            self.sock.getpeercert(binary_form=True)
            if isinstance(self.sock, ssl.SSLSocket)
            else None
        )
        if result is not None and der:
            result.cert_not_after = der_not_after(der)


class _TimedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TimedHTTPConnection


class _TimedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TimedHTTPSConnection


class _TimedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _TimedHTTPPool, "https": _TimedHTTPSPool}


def timed_session() -> requests.Session:
    """A session whose connections report dns/connect/tls timings to the running probe."""
    session = requests.Session()
    session.trust_env = False
    adapter = _TimedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def der_not_after(der: bytes) -> float:
    """notAfter of a DER X.509 certificate as a Unix timestamp (works without verification)."""

    def tlv(pos: int) -> tuple[int, int, int]:
        tag, length = der[pos], der[pos + 1]
        pos += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(der[pos : pos + n], "big")
            pos += n
        return tag, pos, pos + length

    _, cert, _ = tlv(0)
    _, pos, _ = tlv(cert)  # tbsCertificate
    tag, _, end = tlv(pos)
    if tag == 0xA0:  # [0] version
        pos = end
    for _ in range(3):  # serialNumber, signature, issuer
        pos = tlv(pos)[2]
    _, validity, _ = tlv(pos)
    not_after = tlv(tlv(validity)[2])
    tag, start, end = not_after
    text = der[start:end].decode("ascii")
    fmt = "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()


# --- the collector ----------------------------------------------------------------------------


class OneCCollector:
    """Probes the configured 1C URL once per scrape."""

    name = "onec"

    def __init__(
        self,
        config: OneCConfig,
        *,
        session_factory: Callable[[], requests.Session] = timed_session,
    ) -> None:
        if config.url is None:
            raise ValueError("collectors.onec.url is required")
        self.config = config
        parts = urlsplit(str(config.url))
        self.https = parts.scheme == "https"
        host = parts.netloc.rpartition("@")[2]
        # The request goes without user info: credentials travel in the header we build.
        self.url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
        # For messages: scheme, host, port and path only (no user info, no query string).
        self.where = f"{parts.scheme}://{host}{parts.path or '/'}"
        self._auth = basic_credentials(config)
        # Whatever might be secret, to scrub from messages that quote library errors.
        url_password = parts.password or ""
        self._secrets = [
            v
            for v in (url_password, unquote(url_password), parts.query, config.secret_password(),
                      config.secret_token())
            if v
        ]
        self._session_factory = session_factory
        self._body_re = re.compile(config.body_regex) if config.body_regex else None
        self._running: threading.Thread | None = None
        if config.insecure_skip_verify:
            urllib3.disable_warnings(InsecureRequestWarning)

    def collect(self, deadline: Deadline) -> list[Metric]:
        start = time.monotonic()
        if self._running is not None and self._running.is_alive():
            result = ProbeResult(reason=Reason.TIMEOUT, message="the previous probe still runs")
        elif deadline.remaining() <= _WAIT_MARGIN * 2:
            result = ProbeResult(reason=Reason.TIMEOUT, message="no time left for the probe")
        else:
            result = self._probe_in_thread(deadline)
        result.phases.setdefault("total", time.monotonic() - start)
        families = self._families(result)
        if result.reason is not None:
            message = result.message
            for secret in self._secrets:
                message = message.replace(secret, "***")
            raise CollectorError(result.reason, f"{self.where}: {message}", families)
        return families

    def _probe_in_thread(self, deadline: Deadline) -> ProbeResult:
        result = ProbeResult()
        done = threading.Event()

        def run() -> None:
            try:
                self._probe(deadline, result)
            except Exception as exc:  # a bug must not leave the scrape waiting
                result.reason, result.message = Reason.INTERNAL, f"{type(exc).__name__}"
            finally:
                done.set()

        self._running = threading.Thread(target=run, name="onec-probe", daemon=True)
        self._running.start()
        if done.wait(max(0.0, deadline.remaining() - _WAIT_MARGIN)):
            return result
        # Abandoned: report what was measured so far; the thread ends by its socket timeouts.
        return ProbeResult(
            phases=dict(result.phases),
            cert_not_after=result.cert_not_after,
            reason=Reason.TIMEOUT,
            message="no answer before the scrape deadline",
        )

    def _request_kwargs(self, timeout: float) -> dict[str, Any]:
        c = self.config
        kwargs: dict[str, Any] = {
            "timeout": (timeout, timeout),
            "allow_redirects": False,
            "stream": True,
            "headers": {"Accept": "application/json", "User-Agent": "customer-sync-exporter"},
            "verify": False if c.insecure_skip_verify else (str(c.ca_file) if c.ca_file else True),
        }
        if self._auth is not None:
            kwargs["auth"] = self._auth
        elif (token := c.secret_token()) is not None:
            kwargs["headers"]["Authorization"] = f"Bearer {token}"
        return kwargs

    def _probe(self, deadline: Deadline, result: ProbeResult) -> None:
        _current.result = result
        start = time.monotonic()
        try:
            with self._session_factory() as session:
                response = session.get(self.url, **self._request_kwargs(deadline.remaining()))
                with response:
                    headed = time.monotonic()
                    result.status = response.status_code
                    connect = sum(result.phases.get(p, 0.0) for p in ("dns", "connect", "tls"))
                    result.phases["processing"] = max(0.0, headed - start - connect)
                    body = self._read_body(response, deadline)
                    result.phases["transfer"] = time.monotonic() - headed
        except requests.RequestException as exc:
            result.reason, result.message = classify(exc)
            return
        except OSError as exc:  # requests loads ca_file itself: missing or unreadable
            result.reason = Reason.CONFIG
            result.message = f"cannot use ca_file {str(self.config.ca_file)!r}: {exc}"[:300]
            return
        finally:
            result.phases["total"] = time.monotonic() - start
            _current.result = None
        result.reason, result.message = self._check(result.status, body)

    @staticmethod
    def _read_body(response: requests.Response, deadline: Deadline) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_BODY_BYTES or deadline.expired():
                break
        return b"".join(chunks)[:MAX_BODY_BYTES]

    def _check(self, status: int, body: bytes) -> tuple[Reason | None, str]:
        """The assertions, in order: status code, then JSON field, then body regex."""
        c = self.config
        if status not in c.expect_status:
            reason = Reason.AUTH if status in (401, 403) else Reason.HTTP_STATUS
            return reason, f"HTTP {status}, expected {', '.join(map(str, c.expect_status))}"
        text = body.decode("utf-8", errors="replace")
        if c.json_field is not None:
            try:
                found = _as_text(_json_path(json.loads(text), c.json_field))
            except RecursionError:  # json nests in Python's stack: 10,000 '[' end it
                return Reason.ASSERTION, "body is JSON nested too deep to read"
            except (ValueError, KeyError, IndexError, TypeError):
                return Reason.ASSERTION, f"JSON field {c.json_field!r} missing or body not JSON"
            if c.json_value is not None and found != c.json_value:
                return (
                    Reason.ASSERTION,
                    f"JSON field {c.json_field!r} is {found[:80]!r}, expected {c.json_value!r}",
                )
        if self._body_re is not None and not self._body_re.search(text):
            return Reason.ASSERTION, f"body does not match {self._body_re.pattern!r}"
        return None, ""

    def _families(self, result: ProbeResult) -> list[Metric]:
        families: list[Metric] = [
            GaugeMetricFamily(
                "customer_sync_onec_up",
                "1 if the 1C HTTP service answered as expected (status and assertions) in this "
                "scrape, else 0.",
                value=1.0 if result.reason is None else 0.0,
            ),
            GaugeMetricFamily(
                "customer_sync_onec_http_status_code",
                "HTTP status of the 1C probe's response; 0 when no response arrived.",
                value=result.status,
            ),
        ]
        phases = GaugeMetricFamily(
            "customer_sync_onec_probe_duration_seconds",
            "Duration of the 1C probe by phase: dns, connect (TCP), tls (https only), "
            "processing (request sent until response headers), transfer (body), total; "
            "0 for phases the probe did not reach.",
            labels=["phase"],
        )
        for phase in PHASES:
            if phase != "tls" or self.https:
                phases.add_metric([phase], result.phases.get(phase, 0.0))
        families.append(phases)
        if self.https and result.cert_not_after is not None:
            families.append(
                GaugeMetricFamily(
                    "customer_sync_onec_tls_cert_expiry_timestamp_seconds",
                    "notAfter of the 1C server's TLS certificate (Unix time), from the last "
                    "completed handshake.",
                    value=result.cert_not_after,
                )
            )
        return families


def basic_credentials(config: OneCConfig) -> tuple[bytes, bytes] | None:
    """Basic-auth user and password as UTF-8 bytes (RFC 7617, and what 1C's web publication
    decodes): from the ``username``/``password`` keys, else from the URL's user info.

    requests encodes ``str`` credentials as Latin-1 and fails on ``Администратор``; bytes it
    sends as given.
    """
    if config.username is not None:
        user, password = config.username, config.secret_password() or ""
    else:
        parts = urlsplit(str(config.url))
        if parts.username is None:
            return None
        # pydantic keeps the user info percent-encoded (as written, or encoded from UTF-8).
        user, password = unquote(parts.username), unquote(parts.password or "")
    return user.encode("utf-8"), password.encode("utf-8")


def _json_path(doc: Any, path: str) -> Any:
    """Follow a dotted path (``data.status``, ``items.0.id``) into parsed JSON."""
    for part in path.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def classify(exc: requests.RequestException) -> tuple[Reason, str]:
    """Map a requests error to the closed reason set and a short message without secrets."""
    chain = _causes(exc)
    innermost = chain[-1]
    detail = _short(innermost)
    if any(isinstance(e, requests.exceptions.SSLError | ssl.SSLError) for e in chain):
        return Reason.TLS, f"TLS failed: {detail}"
    if any(isinstance(e, NameResolutionError | socket.gaierror) for e in chain):
        return Reason.DNS, f"name resolution failed: {detail}"
    if any(isinstance(e, NewConnectionError) for e in chain):
        # urllib3 derives NewConnectionError from ConnectTimeoutError: refused is not a timeout.
        return Reason.CONNECT, f"connection failed: {detail}"
    timeouts = requests.Timeout | TimeoutError | urllib3.exceptions.TimeoutError
    if any(isinstance(e, timeouts) for e in chain):
        return Reason.TIMEOUT, f"timed out: {detail}"
    return Reason.CONNECT, f"connection failed: {detail}"


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception, what it wraps (MaxRetryError.reason, __cause__, __context__), in order."""
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in out and len(out) < 10:
        out.append(current)
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
        elif current.args and isinstance(current.args[0], BaseException):
            current = current.args[0]
        else:
            current = current.__cause__ or current.__context__
    return out


def _short(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    text = str(exc).strip().splitlines()
    # urllib3 messages start with the connection object's repr; keep the useful tail.
    line = text[0] if text else type(exc).__name__
    return re.sub(r"^<[^>]*>:\s*", "", line)[:200]
