"""The web config in force, re-read when its file or a certificate it names changes.

The file, and every certificate file it names, is checked for changes (a ``stat``) on each
request and each new connection and re-read when it changed: a rotated certificate is presented
by the next TLS handshake without a restart. A file that turns invalid at run time is logged and
the last good config stays in force; switching TLS on or off needs a restart (as in the
toolkit), so such a change is refused the same way. :attr:`WebConfigSource.status` reports
each attempt as ``customer_sync_exporter_web_config_last_reload_*``, like the main config's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

import structlog

from exporter.reload import ReloadStatus
from exporter.web.schema import WebConfigError
from exporter.web.settings import WebSettings, load_web_config
from exporter.yaml_located import parse_located_yaml, read_yaml_text

log = structlog.get_logger(__name__)

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
        self.status = ReloadStatus("web_config")
        self.reloads = 0
        self.reload_failures = 0
        _log_notes(self._settings)
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
            except Exception as exc:  # WebConfigError, or a bug: never a request's 500
                self._failed(exc, before)
                return self._settings
            self._settings = new
            self._attempted = self._settle((self.path, *new.files), before)
            self.reloads += 1
            self.status.succeeded()
            log.info("web config reloaded", file=str(self.path), tls=new.tls is not None,
                     basic_auth_users=len(new.users))
            _log_notes(new)
            return new

    def _failed(self, exc: Exception, before: _Signature) -> None:
        self.reload_failures += 1
        self.status.failed()
        # Also watch what the broken file names: creating a missing cert must retry.
        watch = tuple(dict.fromkeys((*self._watch, *_referenced(self.path))))
        self._attempted = self._settle(watch, before)
        errors = (exc.errors if isinstance(exc, WebConfigError) else
                  [f"{self.path}:0: (internal): cannot load: {type(exc).__name__}"])
        log.error("web config is invalid; keeping the last good one",
                  file=str(self.path), errors=errors)

    def _settle(self, watch: tuple[Path, ...], before: _Signature) -> _Signature:
        """Watch ``watch`` from now on; the signature taken *before* reading stays the baseline
        when the list is unchanged, so an edit made while we were reading is seen next time."""
        same = watch == self._watch
        self._watch = watch
        return before if same else _signature(watch)


def _log_notes(settings: WebSettings) -> None:
    for note in settings.notes:
        log.warning(note, file=str(settings.path))


def _referenced(path: Path) -> list[Path]:
    """The certificate files a (possibly invalid) web config names, best effort."""
    try:
        data = parse_located_yaml(read_yaml_text(path, str(path)), str(path)).data
    except Exception:  # ConfigError, or anything: this runs while handling a failed reload
        return []
    tls = data.get("tls_server_config")
    if not isinstance(tls, dict):
        return []
    return [path.parent / tls[k] for k in ("cert_file", "key_file", "client_ca_file")
            if isinstance(tls.get(k), str) and tls[k]]
