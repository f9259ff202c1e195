"""One HTTP(S) probe per scrape to the 1C HTTP service, with phases, TLS expiry and a reason.

The probe uses ``requests`` on a fresh connection each time (so connect and TLS are measured
every scrape, as blackbox_exporter does), follows no redirects and never retries. Its socket
timeouts are the remaining scrape budget, and it runs in a helper thread that the collector
waits for only until the deadline, so even a hanging DNS lookup cannot hold the scrape. While an
abandoned probe is still running no second one is started. Proxy and ``.netrc`` settings from
the environment are ignored: the probe behaves the same wherever the exporter runs. The
connection's phases are timed by :mod:`collectors.http_timing`.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
import urllib3
from prometheus_client.core import GaugeMetricFamily, Metric
from urllib3.exceptions import InsecureRequestWarning, NameResolutionError, NewConnectionError

from collectors.http_timing import Timings, recording, timed_session
from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import OneCConfig
from exporter.errors import chain, describe, scrub

MAX_BODY_BYTES = 1024 * 1024
_WAIT_MARGIN = 0.02  # seconds kept to build the answer after giving up on the probe
PHASES = ("dns", "connect", "tls", "processing", "transfer", "total")


@dataclass
class ProbeResult(Timings):
    """What one probe saw: the connection's timings, the status and, if it failed, why."""

    status: int = 0
    reason: Reason | None = None
    message: str = ""


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
        self._secrets = [url_password, unquote(url_password), parts.query,
                         config.secret_password() or "", config.secret_token() or ""]
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
            message = scrub(result.message, self._secrets)
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
        start = time.monotonic()
        try:
            with recording(result), self._session_factory() as session:
                response = session.get(self.url, **self._request_kwargs(deadline.remaining()))
                with response:
                    headed = time.monotonic()
                    result.status = response.status_code
                    connect = sum(result.phases.get(p, 0.0) for p in ("dns", "connect", "tls"))
                    result.phases["processing"] = max(0.0, headed - start - connect)
                    body = self._read_body(response, deadline)
                    result.phases["transfer"] = time.monotonic() - headed
        except requests.RequestException as exc:
            result.reason, result.message = classify(exc), explain(exc)
            return
        except OSError as exc:  # requests loads ca_file itself: missing or unreadable
            result.reason = Reason.CONFIG
            result.message = f"cannot use ca_file {str(self.config.ca_file)!r}: {describe(exc)}"
            return
        finally:
            result.phases["total"] = time.monotonic() - start
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


def classify(exc: requests.RequestException) -> Reason:
    """Map a requests error to the closed reason set, by what its chain holds."""
    links = chain(exc)
    if any(isinstance(e, requests.exceptions.SSLError | ssl.SSLError) for e in links):
        return Reason.TLS
    if any(isinstance(e, NameResolutionError | socket.gaierror) for e in links):
        return Reason.DNS
    if any(isinstance(e, NewConnectionError) for e in links):
        # urllib3 derives NewConnectionError from ConnectTimeoutError: refused is not a timeout.
        return Reason.CONNECT
    timeouts = requests.Timeout | TimeoutError | urllib3.exceptions.TimeoutError
    if any(isinstance(e, timeouts) for e in links):
        return Reason.TIMEOUT
    return Reason.CONNECT


_FAILED = {
    Reason.TLS: "TLS failed",
    Reason.DNS: "name resolution failed",
    Reason.CONNECT: "connection failed",
    Reason.TIMEOUT: "timed out",
}


def explain(exc: requests.RequestException) -> str:
    """What failed, then the innermost error of the chain: the outer ones only say where (and
    quote the URL; the collector scrubs what is left of secrets)."""
    return f"{_FAILED[classify(exc)]}: {describe(chain(exc)[-1])}"
