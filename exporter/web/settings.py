"""One web config file, loaded: validated, its TLS context built, ready for the server and gate.

:func:`load_web_config` reads the file through the located YAML reader the main config uses
(same bounds, same ``file:line: key: message`` errors; no ``${VAR}`` expansion, which the
toolkit does not have), validates it (:mod:`.schema`), then builds TLS (:mod:`.tls`).
"""

from __future__ import annotations

import functools
import secrets
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from exporter.web import tls
from exporter.web.schema import WebConfigError, WebConfigModel, validate
from exporter.yaml_located import ConfigError, LocatedYaml, load_located_yaml


@dataclass(frozen=True)
class WebSettings:
    """One valid web config, with its TLS context built and its files noted for change checks.

    ``notes`` are what the config does that its author may not expect (logged on each load).
    """

    path: Path
    tls: ssl.SSLContext | None = None
    client_cert_required: bool = False  # RequireAndVerifyClientCert
    allowed_sans: frozenset[str] | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    dummy_hash: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    rate_limit: tuple[float, int] | None = None
    files: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()

    def client_cert_ok(self, conn: ssl.SSLSocket) -> bool:
        """Whether this TLS connection satisfies the client-certificate requirement (and SANs)."""
        if not self.client_cert_required:
            return True
        cert = conn.getpeercert()  # only ever a certificate OpenSSL verified
        if not cert:
            return False
        return self.allowed_sans is None or tls.san_allowed(cert, self.allowed_sans)


def load_web_config(path: str | Path, *, health_without_auth: bool = False) -> WebSettings:
    """Read and validate ``path`` and build its TLS context; raise :class:`WebConfigError`."""
    path = Path(path)
    try:
        doc = load_located_yaml(path, expand_env=False)
    except ConfigError as exc:
        raise WebConfigError(exc.errors) from None
    model = validate(doc)
    return _settings(model, doc, path, health_without_auth)


def _settings(model: WebConfigModel, doc: LocatedYaml, path: Path,
              health_without_auth: bool) -> WebSettings:
    errors: list[str] = []
    context, files, notes = _tls(model, doc, path.parent, health_without_auth, errors)
    headers: list[tuple[str, str]] = []
    http = model.http_server_config
    if http is not None and http.headers is not None:
        try:
            headers = http.headers.items()
        except ValueError as exc:
            errors.append(doc.error(("http_server_config", "headers"), str(exc)))
    if errors:
        raise WebConfigError(errors)
    rate_limit = _rate_limit(model, notes)
    users = {name: h.get_secret_value().encode()
             for name, h in (model.basic_auth_users or {}).items()}
    c = model.tls_server_config if context is not None else None
    return WebSettings(
        path=path,
        tls=context,
        client_cert_required=c is not None and c.client_auth_type == "RequireAndVerifyClientCert",
        allowed_sans=None if c is None or c.client_allowed_sans is None else frozenset(
            c.client_allowed_sans),
        users=users,
        dummy_hash=_dummy_hash(users.values()) if users else None,
        headers=tuple(headers),
        rate_limit=rate_limit,
        files=tuple(files),
        notes=tuple(notes),
    )


def _tls(model: WebConfigModel, doc: LocatedYaml, base: Path, health_without_auth: bool,
         errors: list[str]) -> tuple[ssl.SSLContext | None, list[Path], list[str]]:
    """The TLS context (None: plain HTTP), the files to watch and the notes to log."""
    c = model.tls_server_config
    if c is None or not c.enabled():
        return None, [], []
    problems = tls.check(c)
    context = None
    if not problems:
        context, problems = tls.build(c, base, health_without_auth=health_without_auth)
    errors += [doc.error(loc, message) for loc, message in problems]
    return context, tls.files(c, base), tls.notes(c)


def _rate_limit(model: WebConfigModel, notes: list[str]) -> tuple[float, int] | None:
    """(interval, burst), or None for no limit (no section, or an interval of 0 or less)."""
    rate = model.rate_limit
    if rate is None or rate.interval <= 0:
        return None
    if rate.burst <= 0:
        notes.append(f"rate_limit: burst {rate.burst} with interval {rate.interval:g}s answers "
                     "every request 429 (as in the toolkit); set burst to 1 or more to let "
                     "requests through")
    return rate.interval, max(rate.burst, 0)


def _dummy_hash(hashes: Iterable[bytes]) -> bytes:
    """A hash of a random password at the users' highest cost, for unknown names.

    Matching the cost matters: a cheaper dummy would make unknown names answer faster.
    """
    return _dummy_at(max(int(h.split(b"$")[2]) for h in hashes))


@functools.cache
def _dummy_at(cost: int) -> bytes:
    """Made once per cost for the process: a reload (under the source's lock, while requests
    wait) must not pay for it again; a cost-18 hash, which the toolkit's fixtures use, takes
    seconds."""
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))
