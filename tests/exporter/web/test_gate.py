"""The WSGI gate against a real server: basic auth (and what bcrypt costs), headers, rate limit."""

from __future__ import annotations

import base64
import statistics
import time
from pathlib import Path
from typing import Any

import bcrypt
import requests

from exporter.web import load_web_config
from exporter.web.gate import BasicAuth, TokenBucket, parse_basic
from tests.exporter.web.clients import bcrypt_hash, write


def test_parse_basic() -> None:
    assert parse_basic("Basic YWxpY2U6cGE6c3M=") == ("alice", b"pa:ss")
    assert parse_basic("basic YWxpY2U6") == ("alice", b"")
    for bad in (None, "", "Bearer abc", "Basic !!!", "Basic YWxpY2U="):
        assert parse_basic(bad) is None


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


def test_a_bucket_of_burst_0_lets_nothing_through() -> None:
    now = [0.0]
    bucket = TokenBucket(1.0, 0, clock=lambda: now[0])
    for t in (0.0, 1.0, 3600.0):
        now[0] = t
        assert bucket.allow() is False
