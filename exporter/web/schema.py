"""The web config file's schema: prometheus/exporter-toolkit's ``web-config.yml``, key for key.

Keys are strict (an unknown key is an error naming file, line and key), and values are read as
the toolkit's Go YAML reader reads them, so one file works for this exporter and for the Go
exporters next to it: any scalar is read as its text where a string is wanted
(``X-XSS-Protection: 1`` is the header value ``1``, see :func:`validate`), a duration is a Go
``time.Duration`` (``1m30s``, or an integer of nanoseconds), and blank strings mean unset.
"""

from __future__ import annotations

import re
import ssl
from typing import Annotated, Any, Literal

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

from exporter.yaml_located import ConfigError, Loc, LocatedYaml

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

# The toolkit's curve names -> OpenSSL group names.
GO_CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1",
             "X25519": "X25519", "X25519MLKEM768": "X25519MLKEM768"}

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
    """A Go ``time.Duration`` in seconds: ``1s``, ``250ms``, ``-1m30s``, ``0``, or an integer
    (nanoseconds, as Go's YAML reader takes it)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value * 1e-9
    if not isinstance(value, str):
        raise ValueError("must be a Go duration such as '1s', '250ms' or '0'")
    sign, text = (-1.0, value[1:]) if value[:1] == "-" else (1.0, value.removeprefix("+"))
    if text == "0":
        return 0.0
    if not text or _GO_DURATION_PART.sub("", text):
        raise ValueError("must be a Go duration such as '1s', '250ms' or '0'")
    return sign * sum(float(n) * _GO_UNITS[u] for n, u in _GO_DURATION_PART.findall(text))


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


def _one_of(table: dict[str, Any], what: str, hint: str) -> BeforeValidator:
    """A name that must be a key of ``table``; anything else is named with ``hint``."""

    def check(value: Any) -> Any:
        if value not in table:
            raise ValueError(f"unknown {what} {value!r}: {hint}")
        return value

    return BeforeValidator(check)


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


BcryptHash = Annotated[SecretStr, BeforeValidator(_bcrypt_hash)]
CipherName = Annotated[
    str, _one_of(GO_CIPHER_SUITES, "cipher suite", "use a name from Go's tls.CipherSuites()")
]
CurveName = Annotated[str, _one_of(GO_CURVES, "curve", f"use one of {', '.join(GO_CURVES)}")]
GoDuration = Annotated[float, BeforeValidator(_go_duration)]
OptionalPath = Annotated[StrictStr | None, BeforeValidator(_blank_is_none)]
OptionalPem = Annotated[StrictStr | None, BeforeValidator(_blank_is_none)]
OptionalSecretPem = Annotated[SecretStr | None, BeforeValidator(_blank_is_none)]

# --- schema ----------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


class TLSServerConfig(_Strict):
    """``tls_server_config``: as in the toolkit; see :mod:`exporter.web.tls` for the rules."""

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
    """A token bucket over all requests: one token per ``interval``, at most ``burst`` saved.

    As in the toolkit (Go's ``rate.Limiter``): an ``interval`` of 0 or less means no limit, and
    a ``burst`` of 0 or less with a positive interval answers every request 429.
    """

    interval: GoDuration = 0.0
    burst: StrictInt = 0


class WebConfigModel(_Strict):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig | None = None
    basic_auth_users: dict[StrictStr, BcryptHash] | None = None
    rate_limit: RateLimitConfig | None = None


class WebConfigError(ConfigError):
    """The web config cannot be used; each line is ``file:line: key: message``."""


# --- validation -----------------------------------------------------------------------------


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


def validate(doc: LocatedYaml) -> WebConfigModel:
    """``doc`` as a :class:`WebConfigModel`, or :class:`WebConfigError` naming every problem.

    Go's YAML reader reads any scalar into a string field as its text (a null as ``""``), so
    where the schema wants a string and YAML read a number, a bool or a date, the scalar's text
    is used instead (:attr:`LocatedYaml.texts`) and the document validated again. Each location
    is replaced at most once, so this ends.
    """
    data, replaced = doc.data, set[Loc]()
    while True:
        try:
            return WebConfigModel.model_validate(data)
        except ValidationError as exc:
            wanted = {loc for e in exc.errors() if e["type"] == "string_type"
                      and (loc := tuple(e["loc"])) in doc.texts and loc not in replaced}
            if not wanted:
                raise WebConfigError([doc.error(tuple(e["loc"]), _describe(e))
                                      for e in exc.errors()]) from None
            for loc in wanted:
                _put(data, loc, doc.texts[loc])
            replaced |= wanted


def _put(data: Any, loc: Loc, value: str) -> None:
    for part in loc[:-1]:
        data = data[part]
    data[loc[-1]] = value
