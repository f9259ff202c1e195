"""Loading one web config file: what a valid file gives the server, and a broken one at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.http import ExporterApp, make_http_server
from exporter.scrape import Scraper
from exporter.web import WebConfigError, load_web_config
from tests.exporter.web.clients import PKI, Value, bcrypt_hash, write


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


def test_broken_web_config_at_start_refuses_to_start(tmp_path: Path) -> None:
    path = write(tmp_path, "tls_server_config:\n  cert_file: missing.crt\n  key_file: x.key\n")
    scraper = Scraper([Value()], 5.0, process_collector=False)
    try:
        with pytest.raises(WebConfigError) as info:
            make_http_server("127.0.0.1:0", ExporterApp(scraper), web_config_file=path)
    finally:
        scraper.close()
    assert info.value.errors[0].startswith(f"{path}:2: tls_server_config.cert_file: ")


@pytest.mark.parametrize(("text", "limit"), [
    ("rate_limit:\n  interval: 1s\n  burst: 0\n", (1.0, 0)),  # the toolkit's "one second" fixture
    ("rate_limit:\n  interval: 1s\n  burst: -3\n", (1.0, 0)),  # rate.Limiter: same as 0
    ("rate_limit:\n  interval: 0\n  burst: 0\n", None),  # the toolkit's "nonblocking" fixture
    ("rate_limit:\n  interval: -1s\n  burst: 5\n", None),  # rate.Every(<= 0): no limit
    ("rate_limit:\n  burst: 5\n", None),
    ("rate_limit:\n", None),
    ("rate_limit:\n  interval: 500ms\n  burst: 2\n", (0.5, 2)),
])
def test_rate_limits_load_as_the_toolkit_reads_them(tmp_path: Path, text: str,
                                                    limit: tuple[float, int] | None) -> None:
    settings = load_web_config(write(tmp_path, text))
    assert settings.rate_limit == limit
    refusing = limit is not None and limit[1] == 0
    assert any("answers every request 429" in n for n in settings.notes) == refusing


@pytest.mark.parametrize("text", ["", "~\n", "# nothing\n"])
def test_an_empty_file_is_plain_http_with_no_limits(tmp_path: Path, text: str) -> None:
    settings = load_web_config(write(tmp_path, text))
    assert (settings.tls, settings.users, settings.headers, settings.rate_limit) == (
        None, {}, (), None)


def test_the_unknown_user_hash_is_made_once_per_cost(tmp_path: Path) -> None:
    path = write(tmp_path, f"basic_auth_users:\n  alice: {bcrypt_hash('a', 5)}\n"
                           f"  bob: {bcrypt_hash('b', 6)}\n")
    first, again = load_web_config(path), load_web_config(path)
    assert first.dummy_hash is not None and first.dummy_hash.startswith(b"$2b$06$")  # the highest
    assert again.dummy_hash is first.dummy_hash  # a reload does not pay for it again
