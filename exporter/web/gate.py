"""The WSGI gate in front of the exporter: rate limit, security headers, client certificate,
basic auth, each as the web config in force says (:class:`~exporter.web.source.WebConfigSource`).

Paths in ``open_paths`` (the health endpoints under ``--web.health-without-auth``) pass the rate
limit, the client-certificate requirement and basic auth, so container probes that cannot present
credentials keep working; they still get the headers. With mTLS this moves the certificate
*requirement* from the handshake to here (a certificate that is presented is still verified in
the handshake): every other path answers 403 without a verified certificate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import bcrypt

from exporter.web.settings import WebSettings
from exporter.web.source import WebConfigSource

CLIENT_CERT_OK = "exporter.client_cert_ok"
"""WSGI environ key: False when this connection lacks a required, verified client certificate."""

BCRYPT_CACHE_SIZE = 100

StartResponse = Callable[..., Any]

# --- basic auth --------------------------------------------------------------------------------


class BasicAuth:
    """bcrypt checks with a bounded result cache; unknown users cost one bcrypt too.

    The cache key is (user, HMAC of stored hash + password under a per-process random key): no
    plaintext password is kept, and a memory dump does not give an offline-guessable digest
    without that key. bcrypt runs one at a time, as in the toolkit, so an auth flood costs one
    core at most. ``bcrypt_runs`` counts comparisons actually made.
    """

    def __init__(self, cache_size: int = BCRYPT_CACHE_SIZE) -> None:
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[tuple[str, bytes], bool] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()
        self.bcrypt_runs = 0

    def check(self, settings: WebSettings, authorization: str | None) -> bool:
        credentials = parse_basic(authorization)
        if credentials is None:
            return False
        user, password = credentials
        stored = settings.users.get(user)
        known = stored is not None
        hashed = stored if stored is not None else settings.dummy_hash
        if hashed is None:  # no users configured: nothing to check against
            return False
        digest = hmac.new(self._key, hashed + b"\0" + password, hashlib.sha256).digest()
        key = (user, digest)
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        with self._bcrypt_lock:
            self.bcrypt_runs += 1
            # bcrypt reads at most 72 bytes; longer passwords are refused, at the same cost.
            match = bcrypt.checkpw(password[:72], hashed)
        ok = known and match and len(password) <= 72
        with self._cache_lock:
            self._cache[key] = ok
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return ok

    def cache_len(self) -> int:
        with self._cache_lock:
            return len(self._cache)


def parse_basic(authorization: str | None) -> tuple[str, bytes] | None:
    """``Basic base64(user:password)`` to (user, password bytes); None when absent or malformed."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
        user_bytes, sep, password = raw.partition(b":")
        if not sep:
            return None
        return user_bytes.decode("utf-8"), password
    except (binascii.Error, UnicodeDecodeError):
        return None


# --- rate limit --------------------------------------------------------------------------------


class TokenBucket:
    """``burst`` tokens, one more every ``interval`` seconds (Go's rate.Limiter semantics: a
    burst of 0 lets nothing through)."""

    def __init__(self, interval: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) / self.interval)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


# --- the WSGI gate -----------------------------------------------------------------------------


class WebConfigGate:
    """WSGI middleware applying the current web config: rate limit, headers, client cert, auth."""

    def __init__(self, app: Callable[..., Any], source: WebConfigSource,
                 open_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.source = source
        self.open_paths = frozenset(open_paths)
        self.auth = BasicAuth()
        self._bucket: TokenBucket | None = None
        self._bucket_spec: tuple[float, int] | None = None
        self._bucket_lock = threading.Lock()

    def _limiter(self, spec: tuple[float, int] | None) -> TokenBucket | None:
        with self._bucket_lock:
            if spec != self._bucket_spec:
                self._bucket_spec = spec
                self._bucket = TokenBucket(*spec) if spec else None
            return self._bucket

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        settings = self.source.current()
        extra = list(settings.headers)

        def with_headers(status: str, headers: list[tuple[str, str]],
                         exc_info: Any = None) -> Any:
            return start_response(status, [*headers, *extra], exc_info)

        if environ.get("PATH_INFO", "/") not in self.open_paths:
            limiter = self._limiter(settings.rate_limit)
            if limiter is not None and not limiter.allow():
                return _plain(with_headers, "429 Too Many Requests")
            if not environ.get(CLIENT_CERT_OK, True):
                return _plain(with_headers, "403 Forbidden",
                              b"Forbidden: a verified client certificate is required\n")
            if settings.users and not self.auth.check(settings,
                                                      environ.get("HTTP_AUTHORIZATION")):
                return _plain(with_headers, "401 Unauthorized",
                              extra=[("WWW-Authenticate", "Basic")])
        result: Iterable[bytes] = self.app(environ, with_headers)
        return result


def _plain(start_response: StartResponse, status: str, body: bytes | None = None,
           extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    data = body if body is not None else f"{status.split(' ', 1)[1]}\n".encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(data))), *(extra or [])])
    return [data]
