"""Assembling the daemon from a validated config: database, collectors, scraper, HTTP server."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import structlog
from prometheus_client.core import Metric

from exporter.collector import Collector
from exporter.config import DB_COLLECTORS, Config
from exporter.db import Database
from exporter.http import ExporterApp, make_http_server, serve_in_thread
from exporter.httpserver import ConnectionStats
from exporter.logs import MASKER
from exporter.memory import MallocTrimmer
from exporter.reload import ReloadStatus
from exporter.scrape import Scraper

log = structlog.get_logger(__name__)


def build_collectors(config: Config, db: Database | None) -> list[Collector]:
    """One collector object per enabled section, in a fixed order."""
    c = config.collectors
    out: list[Collector] = []
    if c.synclog.enabled or c.business.enabled:
        # One source for both: the log is read once. Each collector detaches from it when
        # closed, and the last one out closes it.
        from collectors.synclog_source import SyncLogSource

        assert db is not None
        source = SyncLogSource(db, c.synclog)
        if c.synclog.enabled:
            from collectors.synclog import SyncLogCollector

            out.append(SyncLogCollector(c.synclog, source=source))
        if c.business.enabled:
            from collectors.business import BusinessCollector

            out.append(BusinessCollector(db, c.business, source=source))
    if c.postgres.enabled:
        from collectors.postgres import PostgresCollector

        assert db is not None
        out.append(PostgresCollector(db, c.postgres))
    if c.redis.enabled:
        from collectors.redis import RedisCollector

        out.append(RedisCollector(c.redis))
    if c.disk.enabled:
        from collectors.disk import DiskCollector

        out.append(DiskCollector(c.disk))
    if c.onec.enabled:
        from collectors.onec import OneCCollector

        out.append(OneCCollector(c.onec))
    if c.process.enabled:
        from collectors.process import ProcessGroupCollector

        out.append(ProcessGroupCollector(c.process))
    if c.celery.enabled:
        from collectors.celery import CeleryCollector

        out.append(CeleryCollector(c.celery))
    return out


def required_collectors(config: Config) -> list[str]:
    """Collectors whose dependency is marked ``required``: their failure fails readiness."""
    names = []
    if config.database is not None and config.database.required:
        names += [n for n in DB_COLLECTORS if getattr(config.collectors, n).enabled]
    if config.collectors.redis.enabled and config.collectors.redis.required:
        names.append("redis")
    if config.collectors.onec.enabled and config.collectors.onec.required:
        names.append("onec")
    if config.collectors.celery.enabled and config.collectors.celery.required:
        names.append("celery")
    return names


@dataclass
class Exporter:
    """A running exporter: stop() releases the port, the pool and the collector threads."""

    config: Config
    listen_address: str
    web_config_file: str | None = None
    health_without_auth: bool = False
    reload_status: ReloadStatus = field(default_factory=ReloadStatus)
    http_stats: ConnectionStats = field(default_factory=ConnectionStats)
    trimmer: MallocTrimmer = field(default_factory=MallocTrimmer)
    db: Database | None = field(init=False, default=None)
    scraper: Scraper = field(init=False)
    server: Any = field(init=False)

    def __post_init__(self) -> None:
        self.db, self.scraper = self._build(self.config)
        self.app = ExporterApp(self.scraper, required_collectors(self.config))
        try:
            self.server = make_http_server(
                self.listen_address, self.app, web_config_file=self.web_config_file,
                health_without_auth=self.health_without_auth, stats=self.http_stats,
            )
        except BaseException:
            self._close(self.db, self.scraper)
            raise
        self._thread: threading.Thread | None = None

    def _build(self, config: Config) -> tuple[Database | None, Scraper]:
        MASKER.add(_secrets(config))
        db = Database(config.database) if config.database is not None else None
        scraper = Scraper(build_collectors(config, db), config.scrape_timeout,
                          extra=self._extra_families, trimmer=self.trimmer)
        return db, scraper

    def _extra_families(self) -> list[Metric]:
        """The families that are no collector's: config reloads and the HTTP server."""
        return [*self.reload_status.families(), *self.http_stats.families()]

    def apply(self, config: Config) -> None:
        """Swap in a new config: new collectors and pool; the HTTP server keeps serving."""
        db, scraper = self._build(config)
        old = (self.db, self.scraper)
        self.app.scraper, self.app.required = scraper, set(required_collectors(config))
        self.config, self.db, self.scraper = config, db, scraper
        # Requests that took the old scraper before the swap finish with it (within its scrape
        # timeout); closing it at once cancelled their collections and answered them 500.
        closer = threading.Timer(old[1].scrape_timeout + 1.0, self._close, old)
        closer.daemon = True
        closer.start()

    @staticmethod
    def _close(db: Database | None, scraper: Scraper) -> None:
        scraper.close()
        if db is not None:
            db.close()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> Exporter:
        for name in self.scraper.collector_names:
            log.info("collector enabled", collector=name)
        self._thread = serve_in_thread(self.server)
        log.info("listening", address=self.listen_address, port=self.port,
                 tls=self.server.tls_enabled, web_config=self.web_config_file)
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever, which never ran
            self.server.shutdown()
        self.server.server_close()
        self._close(self.db, self.scraper)


def _secrets(config: Config) -> list[str]:
    from exporter.config import iter_secrets

    return list(iter_secrets(config))


class Signals:
    """SIGINT/SIGTERM stop, SIGHUP reloads; installed before start-up so no signal is lost."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.on_hup: Callable[[], None] = lambda: None
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, lambda _s, _f: self.on_hup())

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        self.stop.set()

    def wait(self) -> None:
        # Python runs signal handlers in the main thread only; a signal the kernel hands to
        # another thread (we have many) waits until the main thread runs again, which an untimed
        # wait never does: SIGHUP reloads were lost. Waking up regularly runs them.
        while not self.stop.wait(0.25):
            pass

