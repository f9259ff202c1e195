"""``tls_server_config`` to an :class:`ssl.SSLContext`: the rules first, then the build.

:func:`check` applies the toolkit's rules (and this server's limits) to the model alone;
:func:`build` only runs on a config that passed them, and reports what OpenSSL refuses (a
missing file, a key that does not match, suites it lacks). Both give ``(key, message)``
problems that the loader turns into located lines.

Client certificates, by ``client_auth_type`` (Go's meaning, kept):

* ``NoClientCert`` and ``RequestClientCert``: none is verified (Go never verifies what
  ``RequestClientCert`` asks for and nothing here reads it, so none is asked for).
* ``VerifyClientCertIfGiven``: a presented certificate must verify; none is fine.
* ``RequireAndVerifyClientCert``: a verified certificate is required (and, with
  ``client_allowed_sans``, one of its SANs must be listed).
* Verified against ``client_ca_file`` or ``client_ca``; without either, against the system's CA
  store, as Go does (any public CA can then vouch for a client: :func:`notes` says so).
* ``RequireAnyClientCert`` (alias ``RequireClientCert``) needs a certificate accepted *without*
  verification, which Python's ssl cannot do: refused at load.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Any

from exporter.web.schema import GO_CIPHER_SUITES, GO_CURVES, TLS_VERSIONS, TLSServerConfig
from exporter.yaml_located import Loc

Problem = tuple[Loc, str]
_TLS: Loc = ("tls_server_config",)
_VERIFYING = ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
_PAIRS = (("cert", "cert_file"), ("key", "key_file"), ("client_ca", "client_ca_file"))


def _auth(c: TLSServerConfig) -> str:
    return c.client_auth_type or "NoClientCert"


def _has_ca(c: TLSServerConfig) -> bool:
    return c.client_ca is not None or c.client_ca_file is not None


def check(c: TLSServerConfig) -> list[Problem]:
    """What makes ``c`` unusable, before anything is read from disk."""
    problems: list[Problem] = []
    if c.cert is None and c.cert_file is None:
        problems.append((_TLS, "missing one of cert or cert_file"))
    if c.key is None and c.key_file is None:
        problems.append((_TLS, "missing one of key or key_file"))
    auth = _auth(c)
    if auth in ("RequireAnyClientCert", "RequireClientCert"):
        problems.append(((*_TLS, "client_auth_type"),
                         f"{auth} (a client certificate accepted without verification) is not "
                         "supported: Python's ssl verifies every client certificate it asks "
                         "for; use RequireAndVerifyClientCert"))
    if auth == "NoClientCert" and _has_ca(c):
        problems.append(((*_TLS, "client_auth_type"),
                         "client CAs are configured without a client auth policy: set "
                         "client_auth_type (RequireAndVerifyClientCert) or remove the CA"))
    if c.client_allowed_sans is not None and auth != "RequireAndVerifyClientCert":
        problems.append(((*_TLS, "client_allowed_sans"),
                         "requires client_auth_type RequireAndVerifyClientCert"))
    if TLS_VERSIONS[c.min_version] > TLS_VERSIONS[c.max_version]:
        problems.append(((*_TLS, "min_version"),
                         f"{c.min_version} is above max_version {c.max_version}"))
    if len(c.curve_preferences) > 1:
        problems.append(((*_TLS, "curve_preferences"),
                         "at most one curve is supported (Python's ssl sets a single ECDH group)"))
    return problems


def notes(c: TLSServerConfig) -> list[str]:
    """What a valid ``c`` does that its author may not expect: logged when it is loaded."""
    out = []
    for inline, name in _PAIRS:
        if getattr(c, inline) is not None and getattr(c, name) is not None:
            out.append(f"tls_server_config: both {inline} and {name} are set; {name} is used "
                       "(as in the toolkit)")
    if _auth(c) in _VERIFYING and not _has_ca(c):
        out.append(f"tls_server_config: {_auth(c)} without client_ca_file: client certificates "
                   "are verified against the system's CA store, so any public CA can vouch for "
                   "a client (as in the toolkit)")
    if TLS_VERSIONS[c.min_version] < ssl.TLSVersion.TLSv1_2 and ssl.OPENSSL_VERSION_INFO >= (3,):
        out.append(f"tls_server_config.min_version {c.min_version}: TLS 1.0 and 1.1 clients are "
                   f"still refused: {ssl.OPENSSL_VERSION} disallows their SHA-1 handshake "
                   "signatures at its default security level (TLS 1.2 and 1.3 are served)")
    return out


def build(c: TLSServerConfig, base: Path, *,
          health_without_auth: bool) -> tuple[ssl.SSLContext, list[Problem]]:
    """The server context for a ``c`` that passed :func:`check`; relative paths are taken from
    ``base``. With ``health_without_auth`` a required client certificate is only *verified* in
    the handshake (the HTTP layer then refuses its absence everywhere but the health paths)."""
    problems: list[Problem] = []
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
            problems.append(((*_TLS, "cipher_suites"), "none of these suites is available in "
                                                       "OpenSSL"))
    if c.curve_preferences:
        curve = c.curve_preferences[0]
        try:
            ctx.set_ecdh_curve(GO_CURVES[curve])
        except ValueError:
            problems.append(((*_TLS, "curve_preferences"),
                             f"{curve} is not available in {ssl.OPENSSL_VERSION}"))
    problems += _load_keypair(ctx, c, base)
    problems += _load_client_cas(ctx, c, base)
    auth = _auth(c)
    if auth == "VerifyClientCertIfGiven" or (
        auth == "RequireAndVerifyClientCert" and health_without_auth
    ):
        ctx.verify_mode = ssl.CERT_OPTIONAL  # presented certificates are still verified
    elif auth == "RequireAndVerifyClientCert":
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:  # NoClientCert, RequestClientCert
        ctx.verify_mode = ssl.CERT_NONE
    return ctx, problems


def files(c: TLSServerConfig, base: Path) -> list[Path]:
    """The files ``c`` names, to be watched for changes."""
    names = (c.cert_file, c.key_file, c.client_ca_file)
    return [base / name for name in names if name is not None]


def _load_client_cas(ctx: ssl.SSLContext, c: TLSServerConfig, base: Path) -> list[Problem]:
    if _auth(c) in _VERIFYING and not _has_ca(c):
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # Go's nil ClientCAs: the system roots
        return []
    if not _has_ca(c):
        return []
    try:
        if c.client_ca_file is not None:
            ctx.load_verify_locations(cafile=str(base / c.client_ca_file))
        else:
            ctx.load_verify_locations(cadata=c.client_ca)
    except (OSError, ssl.SSLError) as exc:
        key = "client_ca_file" if c.client_ca_file is not None else "client_ca"
        return [((*_TLS, key), f"cannot load client CA certificates: {_ssl_reason(exc)}")]
    return []


def _load_keypair(ctx: ssl.SSLContext, c: TLSServerConfig, base: Path) -> list[Problem]:
    loc: Loc = (*_TLS, "cert_file" if c.cert_file is not None else "cert")
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
            return [(loc, f"cannot load the certificate and key: {_ssl_reason(exc)}")]
    return []


def _no_passphrase() -> bytes:
    raise ValueError("the private key is encrypted; the web config has no passphrase key")


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


def san_allowed(cert: dict[str, Any], allowed: frozenset[str]) -> bool:
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
