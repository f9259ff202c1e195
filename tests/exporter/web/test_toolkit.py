"""Every row of exporter-toolkit's ``web/tls_config_test.go`` table (TestYAMLFiles,
TestServerBehaviour, TestUsers, TestConfigReloading), against the exporter's own server.

Each row names the toolkit's fixture; ``tests/fixtures/web/`` holds a file of our own with the
same name and the same shape, next to certificates made for this module (an RSA server
certificate, since the rows name ``TLS_ECDHE_RSA_*`` suites; EC client certificates). A row
gives the load outcome (what Go's ``Validate`` gives, unless a documented difference says
otherwise), then what each client gets: an HTTP status, ``refused`` (no HTTP answer: the
handshake failed or the connection was closed), and for cipher rows the suite negotiated.

The differences from Go, each documented in the README's web-configuration section: several
curves and ``RequireAnyClientCert`` are refused at load; ``TLS_RSA_WITH_AES_128_CBC_SHA`` with
HTTP/2 on loads (no HTTP/2 here, so Go's HTTP/2 cipher rule does not apply); a plain-HTTP client
on a TLS port is disconnected where Go answers 400.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.http import ExporterApp, make_http_server, serve_in_thread
from exporter.scrape import Scraper
from exporter.web import WebConfigError
from tests.exporter.web.clients import PKI, Value, client_context, https_get
from tests.tls_certs import atomic_write, issue, make_ca

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "web"
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw"}


@dataclass(frozen=True)
class Row:
    """One row: the toolkit's test name, its fixture (None: no web config), the load error
    expected (None: it loads) and, per client, what that client gets."""

    name: str
    fixture: str | None
    refused_at_load: str | None = None
    clients: dict[str, str] = field(default_factory=dict)


NO_CERT_VARIANTS = {"https+foreign_cert": "refused", "https+client_cert": "refused"}

YAML_FILES = [  # TestYAMLFiles: only whether the file loads, and the message
    Row("path to config yml invalid", "somefile", "(file): cannot read: No such file"),
    Row("empty config yml", "web_config_empty.yml", None, {"http": "200", "https": "refused"}),
    Row("invalid config yml (invalid structure)", "web_config_junk.yml", "(syntax): invalid YAML"),
    Row("invalid config yml (invalid key)", "web_config_junk_key.yml",
        "tls_server_config.cert_fiel: unknown key"),
    Row("invalid config yml (cert path empty)", "web_config_noAuth_certPath_empty.bad.yml",
        "missing one of cert or cert_file"),
    Row("invalid config yml (cert empty)", "web_config_noAuth_cert_empty.bad.yml",
        "missing one of cert or cert_file"),
    Row("invalid config yml (key path empty)", "web_config_noAuth_keyPath_empty.bad.yml",
        "missing one of key or key_file"),
    Row("invalid config yml (key empty)", "web_config_noAuth_key_empty.bad.yml",
        "missing one of key or key_file"),
    # Go checks the paths before the auth type; the schema here stops at the invented type.
    Row("invalid config yml (cert path and key path empty)",
        "web_config_noAuth_certPath_keyPath_empty.bad.yml",
        "tls_server_config.client_auth_type: Input should be"),
    Row("invalid config yml (cert path invalid)", "web_config_noAuth_certPath_invalid.bad.yml",
        "cannot load the certificate and key: No such file or directory"),
    Row("invalid config yml (key path invalid)", "web_config_noAuth_keyPath_invalid.bad.yml",
        "cannot load the certificate and key: No such file or directory"),
    Row("invalid config yml (cert path and key path invalid)",
        "web_config_noAuth_certPath_keyPath_invalid.bad.yml",
        "cannot load the certificate and key: No such file or directory"),
    Row("invalid config yml (invalid ClientAuth)", "web_config_noAuth.bad.yml",
        "client CAs are configured without a client auth policy"),
    # Go reads the CA file before checking the policy; here the rules come first.
    Row("invalid config yml (invalid ClientCAs filepath)",
        "web_config_auth_clientCAs_invalid.bad.yml",
        "client CAs are configured without a client auth policy"),
    Row("invalid config yml (invalid user list)", "web_config_auth_user_list_invalid.bad.yml",
        "basic_auth_users.eve: is not a bcrypt hash"),
    Row("invalid config yml (bad cipher)", "web_config_noAuth_inventedCiphers.bad.yml",
        "unknown cipher suite 'TLS_MADE_UP_WITH_NOTHING_SHA'"),
    Row("invalid config yml (bad curves)", "web_config_noAuth_inventedCurves.bad.yml",
        "unknown curve 'CurveP999'"),
    Row("invalid config yml (bad TLS version)", "web_config_noAuth_wrongTLSVersion.bad.yml",
        "tls_server_config.min_version: Input should be 'TLS10', 'TLS11', 'TLS12' or 'TLS13'"),
]

SERVER_BEHAVIOUR = [  # TestServerBehaviour (each Go row runs twice, from a file and in-memory)
    Row("empty string YAMLConfigPath and default client / TLS client", None, None,
        {"http": "200", "https": "refused", "burst:5": "200 200 200 200 200 200"}),
    # The toolkit's most basic TLS fixture: VerifyClientCertIfGiven without client_ca_file
    # verifies against the system store, which does not know this module's CA.
    Row("valid tls config yml and default client / tls client / TLS 1.1 client",
        "web_config_noAuth.good.yml", None,
        {"http": "refused", "https": "200", "tls11": "refused", **NO_CERT_VARIANTS}),
    Row("valid tls config yml (cert and key inline) and tls client",
        "web_config_noAuth_tlsInline.good.yml", None,
        {"http": "refused", "https": "200", "tls11": "refused"}),
    Row("valid tls config yml with all ciphers", "web_config_noAuth_allCiphers.good.yml", None,
        {"https": "200", "cipher:ECDHE-RSA-AES128-GCM-SHA256": "200 ECDHE-RSA-AES128-GCM-SHA256",
         "cipher:AES128-SHA": "200 AES128-SHA"}),
    Row("valid tls config yml with some ciphers / no common cipher / multiple client ciphers",
        "web_config_noAuth_someCiphers.good.yml", None,
        {"cipher:ECDHE-RSA-AES128-GCM-SHA256": "200 ECDHE-RSA-AES128-GCM-SHA256",
         "cipher:ECDHE-RSA-AES256-SHA": "refused",
         "cipher:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256":
             "200 ECDHE-RSA-AES128-GCM-SHA256",  # the server's order wins
         "https13": "refused"}),  # max_version TLS12
    Row("valid tls config yml with multiple client ciphers, client chooses cipher",
        "web_config_noAuth_someCiphers_noOrder.good.yml", None,
        {"cipher:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384":
             "200 ECDHE-RSA-AES128-GCM-SHA256"}),  # prefer_server_cipher_suites: false
    Row("valid tls config yml with all curves", "web_config_noAuth_allCurves.good.yml",
        "at most one curve is supported"),  # documented: the ssl module sets a single group
    Row("valid tls config yml with some curves / no common curves",
        "web_config_noAuth_someCurves.good.yml", None,
        {"curve:secp521r1": "200", "curve:secp384r1": "refused"}),
    Row("valid tls config yml with non-http2 ciphers", "web_config_noAuth_noHTTP2.good.yml",
        None, {"cipher:ECDHE-RSA-AES256-GCM-SHA384": "200 ECDHE-RSA-AES256-GCM-SHA384"}),
    # Go refuses to serve (HTTP/2 needs an ECDHE-AES-GCM suite); no HTTP/2 here: it serves.
    Row("valid tls config yml with non-http2 ciphers but http2 enabled",
        "web_config_noAuth_noHTTP2Cipher.bad.yml", None,
        {"cipher:AES128-SHA": "200 AES128-SHA", "cipher:ECDHE-RSA-AES128-GCM-SHA256": "refused"}),
    Row("valid headers config", "web_config_headers.good.yml", None, {"http": "200 headers"}),
    Row("invalid X-Content-Type-Options headers config",
        "web_config_headers_content_type_options.bad.yml",
        "headers.X-Content-Type-Options: Input should be '' or 'nosniff'"),
    Row("invalid X-Frame-Options headers config", "web_config_headers_frame_options.bad.yml",
        "headers.X-Frame-Options: Input should be '', 'deny' or 'sameorigin'"),
    Row("HTTP header that can not be overridden", "web_config_headers_extra_header.bad.yml",
        "HTTP header 'Server' can not be configured"),
    Row("valid tls config yml and tls client with RequireAnyClientCert (present certificate)",
        "tls_config_noAuth.requireanyclientcert.good.yml",
        "RequireAnyClientCert (a client certificate accepted without verification) is not "
        "supported"),  # documented: Python's ssl verifies every certificate it asks for
    Row("valid tls config yml and tls client with RequireAndVerifyClientCert (present "
        "certificate)", "tls_config_noAuth.requireandverifyclientcert.good.yml", None,
        {"https+client_cert": "200", "https": "refused", "https+foreign_cert": "refused",
         "http": "refused"}),
    Row("valid tls config yml and tls client with VerifyPeerCertificate (present good SAN DNS "
        "entry)", "web_config_auth_client_san.good.yaml", None,
        {"https+san:scraper-3": "200", "https+san:someone-else": "refused", "https": "refused"}),
    Row("valid tls config yml and tls client with VerifyPeerCertificate (present invalid SAN DNS "
        "entries)", "web_config_auth_client_san.bad.yaml", None,
        {"https+san:scraper-3": "refused"}),
    Row("valid rate limiter (no rate limiter set up) that doesn't block",
        "web_config_rate_limiter_nonblocking.yaml", None,
        {"burst:10": " ".join(["200"] * 11)}),
    Row("valid rate limiter with an interval of one second",
        "web_config_rate_limiter_one_second.yaml", None,
        {"burst:10": " ".join(["429"] * 11)}),  # burst 0: nothing passes, as rate.Limiter does
]

USERS = [  # TestUsers
    Row("without basic auth / with correct basic auth", "web_config_users_noTLS.good.yml", None,
        {"http": "401", "http+auth:dave": "200", "http+auth:dave:wrong": "401"}),
    Row("with(out) basic auth and TLS, another user, bad password, bad username",
        "web_config_users.good.yml", None,
        {"https": "401", "https+auth:dave": "200", "https+auth:carol": "200",
         "https+auth:dave:bad": "401", "https+auth:nonexistent:nonexistent": "401",
         "http": "refused"}),
]


# --- the module's certificates and servers ------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("toolkit")
    ca = make_ca("Toolkit Table CA")
    server = issue(ca, "exporter", rsa_key=True)
    server.write(directory, "server")
    (directory / "ca.crt").write_text(ca.cert_pem)
    return PKI(directory, ca, server, directory / "ca.crt")


def _fixture_text(name: str, pki: PKI) -> str:
    text = (FIXTURES / name).read_text()
    for marker, pem in (("@SERVER_CERT@", pki.server.cert_pem), ("@SERVER_KEY@", pki.server.key_pem)):
        text = text.replace(marker, "\n".join("    " + line for line in pem.strip().splitlines()))
    return text


@pytest.fixture
def serve(pki: PKI) -> Iterator[Callable[[str | None], Any]]:
    started: list[tuple[Any, Scraper]] = []

    def _serve(fixture: str | None) -> Any:
        path = None
        if fixture is not None:
            path = pki.dir / fixture
            if (FIXTURES / fixture).exists():
                atomic_write(path, _fixture_text(fixture, pki))
        scraper = Scraper([Value()], 5.0, process_collector=False)
        try:
            server = make_http_server("127.0.0.1:0", ExporterApp(scraper), web_config_file=path)
        except BaseException:
            scraper.close()
            raise
        started.append((server, scraper))
        serve_in_thread(server)
        return server

    yield _serve
    for server, scraper in started:
        server.shutdown()
        server.server_close()
        scraper.close()


# --- the clients ----------------------------------------------------------------------------------


def _tls_client(pki: PKI, how: str) -> ssl.SSLContext:
    """A TLS client trusting the module's CA, shaped by ``how`` (see :func:`outcome`)."""
    ctx = client_context(pki)
    kind, _, arg = how.partition(":")
    if kind == "tls11":
        with warnings.catch_warnings():  # deliberately old: the server must refuse it
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that this client can offer TLS 1.1
    elif kind == "https13":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    elif kind == "cipher":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(arg)
    elif kind == "curve":
        ctx.set_ecdh_curve(arg)
    elif kind == "https+client_cert":
        ctx.load_cert_chain(*map(str, pki.client("table-client")))
    elif kind == "https+foreign_cert":
        intruder = issue(make_ca("Foreign CA"), "intruder", client=True)
        ctx.load_cert_chain(*map(str, intruder.write(pki.dir, "intruder")))
    elif kind == "https+san":
        ctx.load_cert_chain(*map(str, pki.client(f"san-{arg}", sans=(arg,))))
    return ctx


def _auth(how: str) -> tuple[str, str] | None:
    """``http+auth:USER`` (the user's password) or ``http+auth:USER:PASSWORD``."""
    if "+auth:" not in how:
        return None
    user, _, password = how.split("+auth:", 1)[1].partition(":")
    return user, password or PASSWORDS[user]


def outcome(server: Any, pki: PKI, how: str) -> str:
    """What the client ``how`` gets from ``server``: ``http`` (plain HTTP), ``https`` (TLS, no
    certificate), ``tls11``, ``https13`` (TLS 1.3 only), ``cipher:LIST``, ``curve:NAME``,
    ``https+client_cert``, ``https+foreign_cert``, ``https+san:NAME``, ``…+auth:USER[:PW]``,
    ``burst:N`` (N + 1 requests in a row, as the toolkit's rate-limit rows make)."""
    port = int(server.server_address[1])
    if how.startswith("burst:"):
        return " ".join(outcome(server, pki, "http") for _ in range(int(how[6:]) + 1))
    auth = _auth(how)
    if how.startswith("http") and not how.startswith("https"):
        try:
            r = requests.get(f"http://127.0.0.1:{port}/metrics", auth=auth, timeout=5)
        except requests.ConnectionError:
            return "refused"
        return _with_headers(str(r.status_code), r.headers, how)
    headers = {}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        answer = https_get(port, _tls_client(pki, how.split("+auth:")[0]), headers=headers)
    except (OSError, http.client.HTTPException):
        return "refused"
    if answer.status == 200:
        assert b"customer_sync_probe_value 42.0" in answer.body  # the real /metrics
    return f"{answer.status} {answer.cipher}" if how.startswith("cipher:") else str(answer.status)


def _with_headers(status: str, headers: Any, how: str) -> str:
    """The headers fixture's values, checked as Go sends them (``X-XSS-Protection: 1``)."""
    if status != "200" or "X-Frame-Options" not in headers:
        return status
    expected = {"X-Frame-Options": "sameorigin", "X-Content-Type-Options": "nosniff",
                "Strict-Transport-Security": "max-age=63072000; includeSubDomains; preload",
                "X-XSS-Protection": "1",
                "Content-Security-Policy": "default-src 'none'; img-src 'self'"}
    assert {k: headers.get(k) for k in expected} == expected
    return f"{status} headers"


# --- the table ------------------------------------------------------------------------------------


@pytest.mark.parametrize("row", YAML_FILES + SERVER_BEHAVIOUR + USERS, ids=lambda r: r.name)
def test_toolkit_row(row: Row, serve: Callable[[str | None], Any], pki: PKI) -> None:
    if row.refused_at_load is not None:
        with pytest.raises(WebConfigError) as info:
            serve(row.fixture)
        assert any(row.refused_at_load in e for e in info.value.errors), info.value.errors
        assert all(e.startswith(f"{pki.dir / str(row.fixture)}:") for e in info.value.errors)
        return
    server = serve(row.fixture)
    got = {how: outcome(server, pki, how) for how in row.clients}
    assert got == row.clients


def test_every_fixture_is_in_the_table() -> None:
    used = {r.fixture for r in YAML_FILES + SERVER_BEHAVIOUR + USERS} | {
        "web_config_noAuth.good.blocking.yml"}  # the reload row below
    assert {p.name for p in FIXTURES.iterdir()} == used - {None, "somefile"}


def test_config_reloading_relaxes_a_blocking_policy_without_restart(
    serve: Callable[[str | None], Any], pki: PKI
) -> None:
    # TestConfigReloading: RequireAndVerifyClientCert (no CA: the system store) refuses a client
    # without a certificate; the same file turned VerifyClientCertIfGiven lets it in.
    server = serve("web_config_noAuth.good.blocking.yml")
    assert outcome(server, pki, "https") == "refused"
    atomic_write(pki.dir / "web_config_noAuth.good.blocking.yml",
                 _fixture_text("web_config_noAuth.good.yml", pki))
    assert outcome(server, pki, "https") == "200"
