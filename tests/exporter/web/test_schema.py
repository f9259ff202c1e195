"""The web config's schema: strict keys, located errors, and values read as the toolkit's Go
YAML reader reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.web import load_web_config
from exporter.web.schema import _go_duration, validate
from exporter.yaml_located import parse_located_yaml
from tests.exporter.web.clients import bcrypt_hash, load_errors, write


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
        ("rate_limit:\n  interval: 1s\n  burst: many\n",
         "web.yml:3: rate_limit.burst: Input should be a valid integer"),
        ("http_server_config:\n  headers:\n    X-Frame-Options: 1\n",
         "web.yml:3: http_server_config.headers.X-Frame-Options: Input should be '', 'deny' or "
         "'sameorigin'"),
        ("- a\n- b\n", "web.yml:1: (top level): the file must be a mapping of keys"),
        ("basic_auth_users:\n  alice: [1\n", "web.yml:3: (syntax): invalid YAML"),
    ],
)
def test_strict_schema_errors_name_file_line_and_key(tmp_path: Path, text: str,
                                                     expected: str) -> None:
    errors = load_errors(tmp_path, text)
    assert any(e.startswith(str(tmp_path / expected.split(":", 1)[0]))
               and expected.split(":", 1)[1] in e for e in errors), errors


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


def test_go_durations() -> None:
    assert _go_duration("1m30s") == 90.0
    assert _go_duration("250ms") == 0.25
    assert _go_duration("1.5h") == 5400.0
    assert _go_duration("-2s") == -2.0 and _go_duration("+1s") == 1.0
    assert _go_duration(0) == 0.0
    assert _go_duration(1_500_000_000) == pytest.approx(1.5)  # Go reads an integer as ns
    for bad in ("1d", "", "5", "-", True, "s", 1.5, None):
        with pytest.raises(ValueError):
            _go_duration(bad)


# --- values as Go's YAML reader reads them ------------------------------------------------------


def test_a_header_value_yaml_reads_as_a_number_is_its_text(tmp_path: Path) -> None:
    # The toolkit's own headers fixture writes ``X-XSS-Protection: 1``: Go reads the string "1".
    settings = load_web_config(write(tmp_path, """
    http_server_config:
      headers:
        X-XSS-Protection: 1
        Content-Security-Policy: 0x10
        Strict-Transport-Security: 2001-12-14
        X-Frame-Options: deny
    """))
    assert dict(settings.headers) == {"X-XSS-Protection": "1", "Content-Security-Policy": "0x10",
                                      "Strict-Transport-Security": "2001-12-14",
                                      "X-Frame-Options": "deny"}


def test_every_string_key_takes_the_text_of_any_scalar(tmp_path: Path) -> None:
    users = {"123": bcrypt_hash("a"), "on": bcrypt_hash("b"), "1.5": bcrypt_hash("c")}
    model = validate(parse_located_yaml(
        "tls_server_config:\n  cert_file: 2024\n  key_file: yes\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: 1.0\n"
        "  client_allowed_sans: [10, true, ~, x]\n"
        "http_server_config:\n  headers:\n    X-XSS-Protection: ~\n"
        "basic_auth_users:\n" + "".join(f"  {u}: {h}\n" for u, h in users.items()),
        "web.yml"))
    tls = model.tls_server_config
    assert tls is not None and model.http_server_config and model.http_server_config.headers
    assert (tls.cert_file, tls.key_file, tls.client_ca_file) == ("2024", "yes", "1.0")
    assert tls.client_allowed_sans == ["10", "true", "", "x"]  # a null reads as ""
    assert model.http_server_config.headers.x_xss_protection == ""  # blank: no header
    assert model.basic_auth_users is not None and set(model.basic_auth_users) == set(users)


def test_typed_keys_stay_typed(tmp_path: Path) -> None:
    # Only where a string is wanted does a scalar become its text: a bool key still wants a bool.
    errors = load_errors(tmp_path, "http_server_config:\n  http2: 1\n")
    assert errors == [f"{tmp_path / 'web.yml'}:2: http_server_config.http2: Input should be a "
                      "valid boolean"]
    model = validate(parse_located_yaml("rate_limit:\n  interval: 2s\n  burst: 3\n", "web.yml"))
    assert model.rate_limit is not None and (model.rate_limit.interval, model.rate_limit.burst) == (
        2.0, 3)
