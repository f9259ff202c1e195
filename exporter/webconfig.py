"""The exporter-toolkit web config (``--web.config.file``): TLS, mTLS, basic auth, headers.

The file format is prometheus/exporter-toolkit's ``docs/web-configuration.md``, so one file works
for this exporter and for the Go exporters next to it. Keys are strict (an unknown key is an error
naming file, line and key). The file, and every certificate file it names, is checked for changes
(a ``stat``) on each request and each new connection and re-read when it changed: a rotated
certificate is presented by the next TLS handshake without a restart. A file that turns invalid
at run time is logged and the last good config stays in force.

Where Python's ``ssl`` cannot do what Go's ``crypto/tls`` does, we refuse rather than weaken:

* ``client_auth_type``: ``NoClientCert``, ``VerifyClientCertIfGiven`` and
  ``RequireAndVerifyClientCert`` behave as in Go. ``RequestClientCert`` admits exactly the same
  clients as ``NoClientCert`` (Go never verifies that certificate and nothing here reads it), so
  no certificate is requested. ``RequireAnyClientCert`` (alias ``RequireClientCert``) needs a
  certificate accepted *without* verification, which Python's ssl cannot do: rejected at load.
  Verifying types need ``client_ca_file`` or ``client_ca`` (Go falls back to the system roots,
  i.e. any public CA could mint a client identity; we do not).
* ``cipher_suites``: Go names are mapped to OpenSSL names (TLS <= 1.2, as in Go; TLS 1.3 names
  are accepted and, as in Go, change nothing). ``curve_preferences``: one curve is enforced; a
  list of several is rejected (the ssl module can set only one group).
* ``http_server_config.http2`` is accepted and has no effect (this server speaks HTTP/1.1).
* Switching TLS on or off needs a restart (as in the toolkit); such a change is rejected at run
  time and the running config kept.

Health endpoints: the toolkit schema has no per-path exemption, so it is not a key here; the CLI
flag ``--web.health-without-auth`` (``health_without_auth``) lets ``/health/live`` and
``/health/ready`` through basic auth, the client-certificate requirement and the rate limit, so
container probes that cannot present credentials keep working. With mTLS this moves the
certificate *requirement* from the handshake to the HTTP layer (a certificate that is presented is
still verified in the handshake); every other path answers 403 without a verified certificate.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import ssl
import stat
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import bcrypt
import structlog
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from exporter.config import ConfigError, Loc, _Located, format_loc

log = structlog.get_logger(__name__)

CLIENT_CERT_OK = "exporter.client_cert_ok"
"""WSGI environ key: False when this connection lacks a required, verified client certificate."""

BCRYPT_CACHE_SIZE = 100

# --- value tables ----------------------------------------------------------------------------

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's tls.CipherSuites() names -> OpenSSL names; None for TLS 1.3 suites (not configurable).
GO_CIPHER_SUITES: dict[str, str | None] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
}

GO_CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1",
             "X25519": "X25519"}

ClientAuthType = Literal[
    "", "NoClientCert", "RequestClientCert", "RequireAnyClientCert", "RequireClientCert",
    "VerifyClientCertIfGiven", "RequireAndVerifyClientCert",
]
TLSVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]

_BCRYPT_HASH = re.compile(r"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
             "h": 3600.0}


def _go_duration(value: Any) -> float:
    """A Go ``time.Duration`` string (``1s``, ``250ms``, ``1m30s``, ``0``) in seconds."""
    if value == 0 and not isinstance(value, bool):
        return 0.0
    if not isinstance(value, str) or not value or _GO_DURATION_PART.sub("", value):
        raise ValueError("must be a Go duration such as '1s', '250ms' or '0'")
    return sum(float(n) * _GO_UNITS[u] for n, u in _GO_DURATION_PART.findall(value))


def _bcrypt_hash(value: Any) -> Any:
    # Never echo the value: a hash is not the password, but it still is not for logs.
    if not isinstance(value, str):
        raise ValueError("must be a bcrypt hash string")
    match = _BCRYPT_HASH.match(value)
    if not match or not 4 <= int(match.group(1)) <= 31:
        raise ValueError(
            "is not a bcrypt hash ($2a$/$2b$/$2y$, cost 04-31); "
            "make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"
        )
    return value


def _cipher(value: Any) -> Any:
    if value not in GO_CIPHER_SUITES:
        raise ValueError(f"unknown cipher suite {value!r}: use a name from Go's tls.CipherSuites()")
    return value


def _curve(value: Any) -> Any:
    if value not in GO_CURVES:
        raise ValueError(f"unknown curve {value!r}: use one of {', '.join(GO_CURVES)}")
    return value


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


BcryptHash = Annotated[SecretStr, BeforeValidator(_bcrypt_hash)]
CipherName = Annotated[str, BeforeValidator(_cipher)]
CurveName = Annotated[str, BeforeValidator(_curve)]
GoDuration = Annotated[float, BeforeValidator(_go_duration)]
OptionalPath = Annotated[StrictStr | None, BeforeValidator(_blank_is_none)]
OptionalPem = Annotated[StrictStr | None, BeforeValidator(_blank_is_none)]
OptionalSecretPem = Annotated[SecretStr | None, BeforeValidator(_blank_is_none)]

# --- schema ----------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


class TLSServerConfig(_Strict):
    """``tls_server_config``: as in the toolkit; see the module docstring for the differences."""

    cert: OptionalPem = None
    key: OptionalSecretPem = None
    client_ca: OptionalPem = None
    cert_file: OptionalPath = None
    key_file: OptionalPath = None
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: OptionalPath = None
    client_allowed_sans: list[StrictStr] | None = None
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"
    cipher_suites: list[CipherName] = Field(default_factory=list)
    prefer_server_cipher_suites: StrictBool = True
    curve_preferences: list[CurveName] = Field(default_factory=list)

    def enabled(self) -> bool:
        """The toolkit's rule: any certificate, key or CA, or an explicit auth type, means TLS."""
        files = (self.cert, self.key, self.client_ca, self.cert_file, self.key_file,
                 self.client_ca_file)
        auth_set = "client_auth_type" in self.model_fields_set and self.client_auth_type != ""
        return auth_set or any(v is not None for v in files)


class HeadersConfig(_Strict):
    """``http_server_config.headers``: only the five headers the toolkit allows, blank = unset."""

    content_security_policy: StrictStr = Field("", alias="Content-Security-Policy")
    x_frame_options: Literal["", "deny", "sameorigin"] = Field("", alias="X-Frame-Options")
    x_content_type_options: Literal["", "nosniff"] = Field("", alias="X-Content-Type-Options")
    x_xss_protection: StrictStr = Field("", alias="X-XSS-Protection")
    strict_transport_security: StrictStr = Field("", alias="Strict-Transport-Security")

    def items(self) -> list[tuple[str, str]]:
        out = []
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if value:
                if "\r" in value or "\n" in value:
                    raise ValueError(f"{info.alias}: a header value cannot contain a line break")
                out.append((str(info.alias), value))
        return out


class HTTPServerConfig(_Strict):
    http2: StrictBool = True  # accepted for compatibility; this server speaks HTTP/1.1
    headers: HeadersConfig | None = None


class RateLimitConfig(_Strict):
    """A token bucket over all requests: one token per ``interval``, at most ``burst`` saved."""

    interval: GoDuration = 0.0
    burst: StrictInt = Field(0, ge=0)


class WebConfigModel(_Strict):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig | None = None
    basic_auth_users: dict[StrictStr, BcryptHash] | None = None
    rate_limit: RateLimitConfig | None = None


# --- the loaded, ready-to-use settings ------------------------------------------------------


class WebConfigError(ConfigError):
    """The web config cannot be used; each line is ``file:line: key: message``."""


@dataclass(frozen=True)
class WebSettings:
    """One valid web config, with its TLS context built and its files noted for change checks."""

    path: Path
    tls: ssl.SSLContext | None = None
    client_cert_required: bool = False  # RequireAndVerifyClientCert
    allowed_sans: frozenset[str] | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    dummy_hash: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    rate_limit: tuple[float, int] | None = None
    files: tuple[Path, ...] = ()

    def client_cert_ok(self, conn: ssl.SSLSocket) -> bool:
        """Whether this TLS connection satisfies the client-certificate requirement (and SANs)."""
        if not self.client_cert_required:
            return True
        cert = conn.getpeercert()  # only ever a certificate OpenSSL verified
        if not cert:
            return False
        return self.allowed_sans is None or _san_allowed(cert, self.allowed_sans)


def _san_allowed(cert: dict[str, Any], allowed: frozenset[str]) -> bool:
    """Exact match of any DNS, IP, e-mail or URI SAN, like the toolkit (IPs compared as IPs)."""
    allowed_ips = set()
    for entry in allowed:
        with contextlib.suppress(ValueError):
            allowed_ips.add(ipaddress.ip_address(entry))
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "IP Address":
            try:
                if ipaddress.ip_address(value.strip()) in allowed_ips:
                    return True
            except ValueError:
                continue
        elif kind in ("DNS", "email", "URI") and value in allowed:
            return True
    return False


class _Errors:
    """Collects ``file:line: key: message`` lines using the YAML node positions."""

    def __init__(self, filename: str, located: _RawLocated) -> None:
        self.filename = filename
        self.located = located
        self.lines: list[str] = []

    def add(self, loc: Loc, message: str) -> None:
        self.lines.append(
            f"{self.filename}:{self.located.line_of(loc)}: {format_loc(loc)}: {message}"
        )


class _RawLocated(_Located):
    """The config loader's line tracking, without ``${VAR}`` expansion (the toolkit has none)."""

    def _expand_env(self, text: str, loc: Loc, line: int) -> str:
        return text


def _describe(err: Any) -> str:
    kind, msg, loc = err["type"], str(err["msg"]), tuple(err["loc"])
    if kind == "extra_forbidden" and loc[:2] == ("http_server_config", "headers"):
        allowed = ", ".join(str(f.alias) for f in HeadersConfig.model_fields.values())
        return f"HTTP header {loc[-1]!r} can not be configured; allowed: {allowed}"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    return msg.removeprefix("Value error, ")


def load_web_config(path: str | Path, *, health_without_auth: bool = False) -> WebSettings:
    """Read and validate ``path`` and build its TLS context; raise :class:`WebConfigError`."""
    path = Path(path)
    filename = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise WebConfigError([f"{filename}:0: (file): cannot read: {reason}"]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or "syntax error"
        raise WebConfigError([f"{filename}:{line}: (syntax): invalid YAML: {problem}"]) from None
    located = _RawLocated(filename, {})
    data = located.convert(node, ()) if node is not None else {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        located.error((), 1, "the file must be a mapping of keys")
    if located.errors:
        raise WebConfigError(located.errors)
    errors = _Errors(filename, located)
    try:
        model = WebConfigModel.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors():
            errors.add(tuple(e["loc"]), _describe(e))
        raise WebConfigError(errors.lines) from None
    settings = _build(model, path, errors, health_without_auth)
    if errors.lines or settings is None:
        raise WebConfigError(errors.lines)
    return settings


def _build(model: WebConfigModel, path: Path, errors: _Errors,
           health_without_auth: bool) -> WebSettings | None:
    base = path.parent
    tls_cfg = model.tls_server_config
    files: list[Path] = []
    tls: ssl.SSLContext | None = None
    required = False
    sans: frozenset[str] | None = None
    if tls_cfg is not None and tls_cfg.enabled():
        for key in ("cert_file", "key_file", "client_ca_file"):
            value = getattr(tls_cfg, key)
            if value is not None:
                files.append(base / value)
        tls = _tls_context(tls_cfg, base, errors, health_without_auth)
        required = tls_cfg.client_auth_type == "RequireAndVerifyClientCert"
        if tls_cfg.client_allowed_sans is not None:
            sans = frozenset(tls_cfg.client_allowed_sans)
    users = {
        name: h.get_secret_value().encode() for name, h in (model.basic_auth_users or {}).items()
    }
    headers: list[tuple[str, str]] = []
    http = model.http_server_config
    if http is not None and http.headers is not None:
        try:
            headers = http.headers.items()
        except ValueError as exc:
            errors.add(("http_server_config", "headers"), str(exc))
    rate = model.rate_limit
    rate_limit = None
    if rate is not None and rate.interval > 0:
        if rate.burst < 1:
            errors.add(("rate_limit", "burst"),
                       "must be at least 1 when interval is set (0 would refuse every request)")
        rate_limit = (rate.interval, rate.burst)
    if errors.lines:
        return None
    return WebSettings(
        path=path,
        tls=tls,
        client_cert_required=required,
        allowed_sans=sans,
        users=users,
        dummy_hash=_dummy_hash(users.values()) if users else None,
        headers=tuple(headers),
        rate_limit=rate_limit,
        files=tuple(files),
    )


def _dummy_hash(hashes: Iterable[bytes]) -> bytes:
    """A hash of a random password at the users' highest cost, for unknown names.

    Matching the cost matters: a cheaper dummy would make unknown names answer faster.
    """
    cost = max(int(h.split(b"$")[2]) for h in hashes)
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))


def _no_passphrase() -> bytes:
    raise ValueError("the private key is encrypted; the web config has no passphrase key")


def _tls_context(c: TLSServerConfig, base: Path, errors: _Errors,
                 health_without_auth: bool) -> ssl.SSLContext | None:
    loc: Loc = ("tls_server_config",)
    before = len(errors.lines)
    pairs = (("cert", "cert_file"), ("key", "key_file"), ("client_ca", "client_ca_file"))
    for inline, name in pairs:
        if getattr(c, inline) is not None and getattr(c, name) is not None:
            errors.add((*loc, name), f"set either {inline} or {name}, not both")
    if c.cert is None and c.cert_file is None:
        errors.add(loc, "missing one of cert or cert_file")
    if c.key is None and c.key_file is None:
        errors.add(loc, "missing one of key or key_file")
    auth = c.client_auth_type or "NoClientCert"
    has_ca = c.client_ca is not None or c.client_ca_file is not None
    if auth in ("RequireAnyClientCert", "RequireClientCert"):
        errors.add((*loc, "client_auth_type"),
                   f"{auth} (a client certificate accepted without verification) is not "
                   "supported: Python's ssl verifies every client certificate it asks for; use "
                   "RequireAndVerifyClientCert with client_ca_file")
    if auth == "NoClientCert" and has_ca:
        errors.add((*loc, "client_auth_type"),
                   "client CAs are configured without a client auth policy: set "
                   "client_auth_type (RequireAndVerifyClientCert) or remove the CA")
    if auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and not has_ca:
        errors.add((*loc, "client_auth_type"),
                   f"{auth} needs client_ca_file (or client_ca) to verify client certificates")
    if c.client_allowed_sans is not None and auth != "RequireAndVerifyClientCert":
        errors.add((*loc, "client_allowed_sans"),
                   "requires client_auth_type RequireAndVerifyClientCert")
    if TLS_VERSIONS[c.min_version] > TLS_VERSIONS[c.max_version]:
        errors.add((*loc, "min_version"), f"{c.min_version} is above max_version {c.max_version}")
    if len(c.curve_preferences) > 1:
        errors.add((*loc, "curve_preferences"),
                   "at most one curve is supported (Python's ssl sets a single ECDH group)")
    if len(errors.lines) > before:
        return None

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated, but asked for explicitly
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = TLS_VERSIONS[c.min_version]
        ctx.maximum_version = TLS_VERSIONS[c.max_version]
    if c.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    openssl_ciphers = [n for n in (GO_CIPHER_SUITES[s] for s in c.cipher_suites) if n]
    if openssl_ciphers:
        try:
            ctx.set_ciphers(":".join(openssl_ciphers))
        except ssl.SSLError:
            errors.add((*loc, "cipher_suites"), "none of these suites is available in OpenSSL")
    if c.curve_preferences:
        ctx.set_ecdh_curve(GO_CURVES[c.curve_preferences[0]])

    _load_keypair(ctx, c, base, errors)
    if has_ca:
        try:
            if c.client_ca_file is not None:
                ctx.load_verify_locations(cafile=str(base / c.client_ca_file))
            else:
                ctx.load_verify_locations(cadata=c.client_ca)
        except (OSError, ssl.SSLError) as exc:
            key = "client_ca_file" if c.client_ca_file is not None else "client_ca"
            errors.add((*loc, key), f"cannot load client CA certificates: {_ssl_reason(exc)}")
    if auth == "VerifyClientCertIfGiven" or (
        auth == "RequireAndVerifyClientCert" and health_without_auth
    ):
        ctx.verify_mode = ssl.CERT_OPTIONAL  # presented certificates are still verified
    elif auth == "RequireAndVerifyClientCert":
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:  # NoClientCert, RequestClientCert
        ctx.verify_mode = ssl.CERT_NONE
    return None if len(errors.lines) > before else ctx


def _load_keypair(ctx: ssl.SSLContext, c: TLSServerConfig, base: Path, errors: _Errors) -> None:
    loc: Loc = ("tls_server_config", "cert_file" if c.cert_file is not None else "cert")
    with tempfile.TemporaryDirectory(prefix="webconfig-") as tmp:
        if c.cert_file is not None:
            cert_path = base / c.cert_file
        else:
            cert_path = Path(tmp) / "cert.pem"
            _write_private(cert_path, c.cert or "")
        if c.key_file is not None:
            key_path = base / c.key_file
        else:
            key_path = Path(tmp) / "key.pem"
            _write_private(key_path, c.key.get_secret_value() if c.key else "")
        try:
            ctx.load_cert_chain(str(cert_path), str(key_path), password=_no_passphrase)
        except (OSError, ssl.SSLError, ValueError) as exc:
            errors.add(loc, f"cannot load the certificate and key: {_ssl_reason(exc)}")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.strerror or type(exc).__name__
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or type(exc).__name__}{where}"
    return str(exc)


# --- the live source: re-read on change --------------------------------------------------------

_Signature = tuple[tuple[int, int, int, int, int] | None, ...]


def _signature(paths: Iterable[Path]) -> _Signature:
    out: list[tuple[int, int, int, int, int] | None] = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


class WebConfigSource:
    """The web config in force. ``current()`` stats the files and reloads when they changed.

    A change is noticed through (device, inode, size, mtime, ctime) of the config file and of
    every certificate/key/CA file it names; an atomic replace (``mv``, a Kubernetes secret's
    symlink swap) always changes the inode, an in-place rewrite changes size or timestamps.
    """

    def __init__(self, path: str | Path, *, health_without_auth: bool = False) -> None:
        self.path = Path(path)
        self.health_without_auth = health_without_auth
        self._lock = threading.Lock()
        self._watch: tuple[Path, ...] = (self.path,)
        before = _signature(self._watch)
        self._settings = load_web_config(self.path, health_without_auth=health_without_auth)
        self._attempted = self._settle((self.path, *self._settings.files), before)
        self.reloads = 0
        self.reload_failures = 0
        if self._settings.users and self._settings.tls is None:
            log.warning("basic auth without TLS: passwords cross the network in clear",
                        file=str(self.path))

    @property
    def tls_enabled(self) -> bool:
        return self._settings.tls is not None

    def current(self) -> WebSettings:
        with self._lock:
            before = _signature(self._watch)
            if before == self._attempted:
                return self._settings
            try:
                new = load_web_config(self.path, health_without_auth=self.health_without_auth)
                if (new.tls is None) != (self._settings.tls is None):
                    raise WebConfigError([
                        f"{self.path}:1: tls_server_config: switching TLS "
                        f"{'on' if new.tls else 'off'} needs a restart"
                    ])
            except WebConfigError as exc:
                self.reload_failures += 1
                # Also watch what the broken file names: creating a missing cert must retry.
                watch = tuple(dict.fromkeys((*self._watch, *_referenced(self.path))))
                self._attempted = self._settle(watch, before)
                log.error("web config is invalid; keeping the last good one",
                          file=str(self.path), errors=exc.errors)
                return self._settings
            self._settings = new
            self._attempted = self._settle((self.path, *new.files), before)
            self.reloads += 1
            log.info("web config reloaded", file=str(self.path), tls=new.tls is not None,
                     basic_auth_users=len(new.users))
            return new

    def _settle(self, watch: tuple[Path, ...], before: _Signature) -> _Signature:
        """Watch ``watch`` from now on; the signature taken *before* reading stays the baseline
        when the list is unchanged, so an edit made while we were reading is seen next time."""
        same = watch == self._watch
        self._watch = watch
        return before if same else _signature(watch)


def _referenced(path: Path) -> list[Path]:
    """The certificate files a (possibly invalid) web config names, best effort."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        tls = data.get("tls_server_config") or {}
        return [path.parent / tls[k] for k in ("cert_file", "key_file", "client_ca_file")
                if isinstance(tls.get(k), str) and tls[k]]
    except Exception:
        return []


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
    """``burst`` tokens, one more every ``interval`` seconds (Go's rate.Limiter semantics)."""

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

StartResponse = Callable[..., Any]


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
