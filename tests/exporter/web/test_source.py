"""Re-reading the web config while serving: changes apply without a restart, a broken file or
certificate keeps the last good config, and every attempt is counted."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from structlog.testing import capture_logs

from tests.exporter.web.clients import (
    MTLS,
    PKI,
    TLS,
    bcrypt_hash,
    client_context,
    https_get,
    refused,
)
from tests.tls_certs import atomic_write, issue, make_ca


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
    import exporter.web.source

    s = start(f"basic_auth_users:\n  alice: {bcrypt_hash('pw')}\n")
    real = exporter.web.source.load_web_config
    failures = iter([RecursionError("deep")])

    def load(*args: Any, **kwargs: Any) -> Any:
        for exc in failures:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(exporter.web.source, "load_web_config", load)
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


def _status(s: Any) -> tuple[float, float]:
    families = {f.name: f.samples[0].value for f in s.gate.source.status.families()}
    return (families["customer_sync_exporter_web_config_last_reload_successful"],
            families["customer_sync_exporter_web_config_last_reload_success_timestamp_seconds"])


def test_reload_status_mirrors_the_main_configs(start: Any) -> None:
    before = time.time()
    s = start(f"basic_auth_users:\n  alice: {bcrypt_hash('pw')}\n")
    ok, loaded = _status(s)
    assert ok == 1 and before <= loaded <= time.time()
    atomic_write(s.config, "basic_auth_users:\n  alice: garbage\n")
    assert requests.get(s.url(), auth=("alice", "pw"), timeout=5).status_code == 200
    assert _status(s) == (0, loaded)  # failed: the time stays the running config's
    changed = time.time()
    atomic_write(s.config, f"basic_auth_users:\n  alice: {bcrypt_hash('new')}\n")
    assert requests.get(s.url(), auth=("alice", "new"), timeout=5).status_code == 200
    ok, reloaded = _status(s)
    assert ok == 1 and changed <= reloaded <= time.time()
    assert (s.gate.source.reloads, s.gate.source.reload_failures) == (1, 1)
