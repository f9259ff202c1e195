"""Re-reading the config file while serving: on SIGHUP, or when its content changes.

A file that does not validate is rejected whole: the running config keeps serving, the errors
are logged with file, line and key, and ``customer_sync_exporter_config_last_reload_successful``
drops to 0 until a good file arrives (the same contract as Prometheus' own reload metric). Any
other failure while loading is a rejected reload too, and the watcher thread outlives them all:
a thread that died would leave the metric at 1 and ignore every later edit and SIGHUP.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.config import Config, ConfigError, load_config
from exporter.yaml_located import MAX_FILE_BYTES

log = structlog.get_logger(__name__)

CHECK_INTERVAL_SECONDS = 2.0


class ReloadStatus:
    """What the last reload attempt of one file did, as metrics: ``what`` names the file in the
    metric names (``config``, ``web_config``) and, with spaces, in their help.

    A success is recorded together with the step that puts the new file in force, under
    :attr:`lock`: whoever reads the status under that lock too (a scrape taking the live
    pipeline, :mod:`exporter.live`) sees both or neither."""

    def __init__(self, what: str = "config") -> None:
        self.what = what
        self.lock = threading.RLock()
        self.successful = True
        self.last_success = time.time()

    def succeeded(self, commit: Callable[[], object] | None = None) -> None:
        """Run ``commit`` (what makes the new file the one in force) and record the success, as
        one step."""
        with self.lock:
            if commit is not None:
                commit()
            self.successful = True
            self.last_success = time.time()

    def failed(self) -> None:
        with self.lock:
            self.successful = False

    @property
    def _noun(self) -> str:
        return self.what.replace("_", " ")

    def families(self) -> list[Metric]:
        with self.lock:
            successful, last_success = self.successful, self.last_success
        return [
            GaugeMetricFamily(
                f"customer_sync_exporter_{self.what}_last_reload_successful",
                f"1 if the last attempt to load the {self._noun} file succeeded (0: the "
                f"previous {self._noun} is still serving; the log says why).",
                value=1.0 if successful else 0.0,
            ),
            GaugeMetricFamily(
                f"customer_sync_exporter_{self.what}_last_reload_success_timestamp_seconds",
                f"Unix time the running {self._noun} was loaded.",
                value=last_success,
            ),
        ]


def _digest(path: Path) -> bytes | None:
    """The bytes the loader would read (no more: a huge file costs nothing) and the size."""
    try:
        with path.open("rb") as f:
            head = f.read(MAX_FILE_BYTES + 1)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return None
    return hashlib.sha256(head + b"\0" + str(size).encode()).digest()


def _unexpected(exc: BaseException) -> str:
    """The exception's type and where it was raised; not its message, which might quote a secret
    of the new file (the log masker only knows the running config's)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{where}"


Commit = Callable[[], object]


class ConfigWatcher:
    """Polls the config file's content and applies a new, valid config through ``apply``.

    ``apply`` prepares what the config needs (for the daemon: a whole new pipeline) and may
    return the step that puts it in force; the watcher runs that step as one with recording the
    success in ``status`` (:meth:`ReloadStatus.succeeded`)."""

    def __init__(
        self,
        path: str | Path,
        prepare: Callable[[Config], Config],
        apply: Callable[[Config], Commit | None],
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
            try:
                self._check()
            except Exception as exc:  # never seen; but a dead watcher would fail silently
                self.status.failed()
                log.error("config watch failed, the previous config keeps serving",
                          file=str(self.path), error=_unexpected(exc))

    def _check(self) -> None:
        digest = _digest(self.path)
        if digest == self._digest and not self._forced:
            return
        self._forced = False
        self._digest = digest
        self.reload()

    def reload(self) -> bool:
        try:
            config = self.prepare(load_config(self.path))
        except ConfigError as exc:
            self.status.failed()
            for line in exc.errors:
                log.error("config reload rejected, the previous config keeps serving", error=line)
            return False
        except Exception as exc:  # a loader bug: still a rejected file, never a dead thread
            self.status.failed()
            log.error("config reload rejected, the previous config keeps serving",
                      error=f"{self.path}:0: (internal): {_unexpected(exc)}")
            return False
        try:
            commit = self.apply(config)
        except Exception as exc:
            self.status.failed()
            log.error("config reload failed, the previous config keeps serving",
                      file=str(self.path), error=f"{type(exc).__name__}: {exc}")
            return False
        self.status.succeeded(commit)
        log.info("config reloaded", file=str(self.path))
        return True
