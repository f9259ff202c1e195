"""TLS from the web config against a real server on 127.0.0.1:0 and real TLS clients: the
load-time rules, then what each kind of client gets in the handshake.

Certificates are made per test (tests/tls_certs.py): CAs, server and client certificates, expired
ones and ones from a foreign CA.
"""

from __future__ import annotations

import ssl
import warnings
from typing import Any

import pytest
import requests
from structlog.testing import capture_logs

from exporter.web import load_web_config
from tests.exporter.web.clients import (
    MTLS,
    PKI,
    TLS,
    client_context,
    first_read,
    https_get,
    load_errors,
    refusal,
    refused,
    write,
)
from tests.tls_certs import issue, make_ca


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
        ("client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n"
         "  client_allowed_sans: [x]", "client_allowed_sans",
         "requires client_auth_type RequireAndVerifyClientCert"),
        ("min_version: TLS13\n  max_version: TLS12", "min_version",
         "TLS13 is above max_version TLS12"),
        ("curve_preferences: [X25519, CurveP256]", "curve_preferences", "at most one curve"),
        ("client_ca_file: ca.crt\n  client_auth_type: ''", "client_auth_type",
         "client CAs are configured without a client auth policy"),
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


# --- verified without a CA file: the system's CA store, as in Go ---------------------------------


@pytest.mark.parametrize("auth", ["VerifyClientCertIfGiven", "RequireAndVerifyClientCert"])
def test_verifying_without_a_client_ca_uses_the_system_store(
    start: Any, pki: PKI, auth: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenSSL's system store is whatever SSL_CERT_FILE names (Go's crypto/x509 reads it too):
    # pointed at a file without our CA, our clients are strangers; pointed at our CA, they verify.
    store = pki.dir / "system-store.pem"
    store.write_text(make_ca("Some Public CA").cert_pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(store))
    monkeypatch.setenv("SSL_CERT_DIR", str(pki.dir / "no-such-dir"))
    client = pki.client()
    with capture_logs() as logs:
        stranger = start(TLS + f"  client_auth_type: {auth}\n")
    assert any("verified against the system's CA store" in e["event"] for e in logs)
    assert refused(stranger.port, client_context(pki, client))
    no_cert = refusal(stranger.port, client_context(pki))
    if auth == "VerifyClientCertIfGiven":
        assert no_cert is None
    else:
        assert no_cert is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))
    trusted = start(TLS + f"  client_auth_type: {auth}\n")
    assert https_get(trusted.port, client_context(pki, client)).status == 200
    wrong_ca = issue(make_ca("Foreign"), "intruder", client=True).write(pki.dir, "intruder")
    assert refused(trusted.port, client_context(pki, wrong_ca))


def test_a_file_and_inline_pem_both_set_use_the_file(start: Any, pki: PKI) -> None:
    other = issue(pki.ca, "inline-one")
    indent = "\n" + " " * 4
    with capture_logs() as logs:
        s = start(TLS + f"  cert: |{indent}{other.cert_pem.strip().replace(chr(10), indent)}\n")
    assert https_get(s.port, client_context(pki)).peer_der == pki.server.der
    assert any("both cert and cert_file are set; cert_file is used" in e["event"] for e in logs)


def test_a_curve_this_openssl_lacks_is_refused_by_name(pki: PKI) -> None:
    text = TLS + "  curve_preferences: [X25519MLKEM768]\n"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ecdh_curve("X25519MLKEM768")
    except ValueError:
        errors = load_errors(pki.dir, text)
        assert any("tls_server_config.curve_preferences: X25519MLKEM768 is not available in "
                   "OpenSSL" in e for e in errors), errors
    else:  # OpenSSL 3.5 or later: it loads
        load_web_config(write(pki.dir, text))


def test_tls10_min_version_loads_and_says_old_clients_stay_refused(start: Any, pki: PKI) -> None:
    with capture_logs() as logs:
        s = start(TLS + "  min_version: TLS10\n")
    assert any("TLS 1.0 and 1.1 clients are still refused" in e["event"] for e in logs)
    old = client_context(pki)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # the client could speak TLS 1.1; the server cannot
    assert refused(s.port, old)
    tls12 = client_context(pki)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert https_get(s.port, tls12).version == "TLSv1.2"
