"""Re-reading the config file while serving: on SIGHUP, or when its content changes.

A file that does not validate is rejected whole: the running config keeps serving, the errors
are logged with file, line and key, and ``customer_sync_exporter_config_last_reload_successful``
drops to 0 until a good file arrives (the same contract as Prometheus' own reload metric).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.config import Config, ConfigError, load_config

log = structlog.get_logger(__name__)

CHECK_INTERVAL_SECONDS = 2.0


class ReloadStatus:
    """What the last reload attempt did, as metrics."""

    def __init__(self) -> None:
        self.successful = True
        self.last_success = time.time()

    def families(self) -> list[Metric]:
        return [
            GaugeMetricFamily(
                "customer_sync_exporter_config_last_reload_successful",
                "1 if the last attempt to load the config file succeeded (0: the previous config "
                "is still serving; the log says why).",
                value=1.0 if self.successful else 0.0,
            ),
            GaugeMetricFamily(
                "customer_sync_exporter_config_last_reload_success_timestamp_seconds",
                "Unix time the running config was loaded.",
                value=self.last_success,
            ),
        ]


def _digest(path: Path) -> bytes | None:
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return None


class ConfigWatcher:
    """Polls the config file's content and applies a new, valid config through ``apply``."""

    def __init__(
        self,
        path: str | Path,
        prepare: Callable[[Config], Config],
        apply: Callable[[Config], None],
        status: ReloadStatus,
        interval: float = CHECK_INTERVAL_SECONDS,
    ) -> None:
        self.path = Path(path)
        self.prepare = prepare  # applies command-line overrides (--collector.X) to a loaded file
        self.apply = apply
        self.status = status
        self.interval = interval
        self.wake = threading.Event()  # set by SIGHUP: check now, and reload even if unchanged
        self._forced = False
        self._stop = threading.Event()
        self._digest = _digest(self.path)
        self._thread = threading.Thread(target=self._run, name="config-watch", daemon=True)

    def start(self) -> ConfigWatcher:
        self._thread.start()
        return self

    def request_reload(self) -> None:
        self._forced = True
        self.wake.set()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wake.wait(self.interval)
            self.wake.clear()
            if self._stop.is_set():
                return
            digest = _digest(self.path)
            if digest == self._digest and not self._forced:
                continue
            self._forced = False
            self._digest = digest
            self.reload()

    def reload(self) -> bool:
        try:
            config = self.prepare(load_config(self.path))
        except ConfigError as exc:
            self.status.successful = False
            for line in exc.errors:
                log.error("config reload rejected, the previous config keeps serving", error=line)
            return False
        try:
            self.apply(config)
        except Exception as exc:
            self.status.successful = False
            log.error("config reload failed, the previous config keeps serving",
                      error=f"{type(exc).__name__}: {exc}")
            return False
        self.status.successful = True
        self.status.last_success = time.time()
        log.info("config reloaded", file=str(self.path))
        return True
