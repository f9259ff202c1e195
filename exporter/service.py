"""The daemon: an HTTP server in front of the live pipeline, a reload that swaps the pipeline,
and the signals that stop and reload it.

The server (:mod:`exporter.http`, :mod:`exporter.httpserver`) and its web config live as long as
the process; a pipeline (:mod:`exporter.pipeline`) lives as long as its config. The log masker
knows the secrets of every pipeline not yet closed: the live one, and one a reload replaced
while it finishes its last requests. Once that one has closed, its secrets are forgotten.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from types import FrameType

import structlog
from prometheus_client.core import Metric

from exporter.config import Config, iter_secrets
from exporter.http import ExporterApp, make_http_server, serve_in_thread
from exporter.httpserver import ConnectionStats
from exporter.live import Live
from exporter.logs import SecretMasker
from exporter.memory import MallocTrimmer
from exporter.pipeline import Pipeline, build_pipeline
from exporter.reload import ReloadStatus

log = structlog.get_logger(__name__)


class Exporter:
    """A running exporter: :meth:`stop` releases the ports, the pool and the collector threads."""

    def __init__(
        self,
        config: Config,
        listen_address: str | Sequence[str],
        *,
        web_config_file: str | None = None,
        health_without_auth: bool = False,
        telemetry_path: str = "/metrics",
        masker: SecretMasker | None = None,
    ) -> None:
        """``listen_address``: one address or several (one socket each); ``masker``: the one
        the logs go through (:func:`exporter.logs.setup_logging`), kept to the secrets in use."""
        self.listen_addresses = ([listen_address] if isinstance(listen_address, str)
                                 else list(listen_address))
        self.web_config_file = web_config_file
        self.masker = masker if masker is not None else SecretMasker()
        self.reload_status = ReloadStatus()
        self.http_stats = ConnectionStats()
        self.trimmer = MallocTrimmer()
        self._in_use: list[Pipeline] = []  # live, or retired and not yet closed
        self._in_use_lock = threading.Lock()
        self._web_status: ReloadStatus | None = None
        self.live = Live(self._build(config), status=self.reload_status,
                         extra=self._extra_families)
        try:
            self.server = make_http_server(
                self.listen_addresses,
                ExporterApp(self.live, telemetry_path=telemetry_path),
                web_config_file=web_config_file, health_without_auth=health_without_auth,
                stats=self.http_stats,
            )
        except BaseException:
            self.live.pipeline.close()
            raise
        if self.server.web is not None:
            self._web_status = self.server.web.status
        self._thread: threading.Thread | None = None

    def _build(self, config: Config) -> Pipeline:
        # Masked before anything of the new config runs (the pool connects in the background).
        self._remask(iter_secrets(config))
        try:
            pipeline = build_pipeline(config, trimmer=self.trimmer)
        except BaseException:
            self._remask()
            raise
        with self._in_use_lock:
            self._in_use.append(pipeline)
        return pipeline

    def _remask(self, extra: Iterable[str] = ()) -> None:
        with self._in_use_lock:
            secrets = [s for p in self._in_use for s in p.secrets]
        self.masker.update([*secrets, *extra])

    def _forget(self, pipeline: Pipeline) -> None:
        with self._in_use_lock:
            self._in_use.remove(pipeline)
        self._remask()

    def _extra_families(self) -> list[Metric]:
        """The families that are no collector's: the HTTP server's and the web config's reloads
        (the config's own reload status comes with the pipeline: :mod:`exporter.live`)."""
        web = self._web_status.families() if self._web_status is not None else []
        return [*web, *self.http_stats.families()]

    def apply(self, config: Config) -> Callable[[], object]:
        """Build ``config``'s pipeline while the old one serves; return the step that puts it
        live (the config watcher runs it together with recording the reload)."""
        new = self._build(config)
        return lambda: self.live.swap(new, on_closed=self._forget)

    @property
    def port(self) -> int:
        """The first listener's port."""
        return int(self.server.server_address[1])

    def start(self) -> Exporter:
        for name in self.live.pipeline.scraper.collector_names:
            log.info("collector enabled", collector=name)
        self._thread = serve_in_thread(self.server)
        for address, bound in zip(self.listen_addresses, self.server.server_addresses,
                                  strict=True):
            log.info("listening", address=address, port=int(bound[1]),
                     tls=self.server.tls_enabled, web_config=self.web_config_file)
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever, which never ran
            self.server.shutdown()
        self.server.server_close()
        with self._in_use_lock:
            pipelines = list(self._in_use)
        for pipeline in pipelines:  # at once: nothing is served any more
            pipeline.close()


class Signals:
    """SIGINT/SIGTERM stop, SIGHUP reloads; installed before start-up so no signal is lost.

    Made in the main thread (where Python runs signal handlers, and only there)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.on_hup: Callable[[], None] = lambda: None
        # A signal the kernel hands to another thread (we have many) is only run once the main
        # thread runs again: its C-level handler writes the signal number here, which wakes the
        # main thread out of ``wait`` at once (SIGHUP reloads were lost to an untimed wait, and
        # a wait polling four times a second cost more CPU than an idle exporter's scrapes).
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, lambda _s, _f: self.on_hup())

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        self.stop.set()

    def wait(self) -> None:
        """Sleep until SIGINT or SIGTERM; run SIGHUP's reload on the way."""
        while not self.stop.is_set():
            select.select([self._wake_r], [], [])  # handlers run as soon as it returns
            with contextlib.suppress(BlockingIOError):
                while self._wake_r.recv(64):
                    pass
