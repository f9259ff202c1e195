"""The exporter-toolkit web config (``--web.config.file``): TLS, mTLS, basic auth, headers,
rate limit.

The file format is prometheus/exporter-toolkit's ``docs/web-configuration.md``, read as the
toolkit reads it, so a ``web-config.yml`` that works for node_exporter works here unchanged:
:mod:`.schema` (keys and values), :mod:`.tls` (the TLS rules, then the context),
:mod:`.settings` (one loaded file), :mod:`.source` (re-read on change) and :mod:`.gate` (the
WSGI middleware). Where Python's ``ssl`` cannot do what Go's ``crypto/tls`` does, the file is
refused at load, never served weaker:

* ``client_auth_type: RequireAnyClientCert`` (``RequireClientCert``): a client certificate
  accepted without verification.
* ``curve_preferences`` with more than one curve: the ssl module sets a single group.
* A curve this OpenSSL lacks (``X25519MLKEM768`` before OpenSSL 3.5).
* ``min_version`` above ``max_version`` (Go loads it and then fails every handshake).

``http_server_config.http2`` is accepted and has no effect (this server speaks HTTP/1.1), so
Go's rule that HTTP/2 needs ``TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`` among the suites does not
apply here either. Health endpoints: the toolkit schema has no per-path exemption, so it is not a
key here; the CLI flag ``--web.health-without-auth`` opens ``/health/live`` and
``/health/ready`` (see :mod:`.gate`).
"""

from exporter.web.gate import CLIENT_CERT_OK, WebConfigGate
from exporter.web.schema import WebConfigError
from exporter.web.settings import WebSettings, load_web_config
from exporter.web.source import WebConfigSource

__all__ = [
    "CLIENT_CERT_OK",
    "WebConfigError",
    "WebConfigGate",
    "WebConfigSource",
    "WebSettings",
    "load_web_config",
]
