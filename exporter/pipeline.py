"""A pipeline: what one config makes to answer scrapes, and nothing of the HTTP server.

That is the database pool, the sync-log source shared by the synclog and business collectors, the
collectors, and the scraper that runs them; plus, from the config, which collectors fail
readiness and which strings are secret. ``check`` runs one with no socket at all; the daemon
serves one at a time (:mod:`exporter.live`) and builds a new one on each config reload.

A pipeline counts the requests inside it (:meth:`Pipeline.enter` / :meth:`Pipeline.leave`).
Once replaced it is *retired*: it takes no new request, serves those already inside to the end,
and closes when the last one is out and the collector runs they started have finished (each is
bounded by its scrape's deadline). So nothing is closed under a request, and nothing waits on a
guessed delay.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import structlog

from exporter.collector import Collector
from exporter.config import DB_COLLECTORS, Config, iter_secrets
from exporter.db import Database
from exporter.memory import MallocTrimmer
from exporter.scrape import Scraper

if TYPE_CHECKING:
    from collectors.synclog_source import SyncLogSource

log = structlog.get_logger(__name__)


class Pipeline:
    """A scraper and what it reads from; closable once no request is inside it."""

    def __init__(
        self,
        scraper: Scraper,
        *,
        required: Iterable[str] = (),
        db: Database | None = None,
        source: SyncLogSource | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        """``required`` names the collectors whose failure fails readiness; ``db`` and ``source``
        are closed with the pipeline; ``secrets`` are the strings its logs must never show."""
        self.scraper = scraper
        self.required = frozenset(required)
        self.db = db
        self.source = source
        self.secrets = tuple(secrets)
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self._inside = 0
        self._retired = False
        self._closing = False
        self._on_closed: list[Callable[[Pipeline], None]] = []

    def enter(self) -> None:
        """A request begins to use the pipeline."""
        with self._lock:
            if self._retired:
                raise RuntimeError("a retired pipeline takes no new request")
            self._inside += 1

    def leave(self) -> None:
        """That request is done with it."""
        with self._lock:
            self._inside -= 1
            drained = self._retired and self._inside == 0
        if drained:
            self._close_in_background()

    @contextmanager
    def used(self) -> Iterator[Pipeline]:
        self.enter()
        try:
            yield self
        finally:
            self.leave()

    def retire(self, on_closed: Callable[[Pipeline], None] | None = None) -> None:
        """Take no new request; close once the last one is out, then call ``on_closed``."""
        with self._lock:
            self._retired = True
            if on_closed is not None:
                self._on_closed.append(on_closed)
            drained = self._inside == 0
        if drained:
            self._close_in_background()

    def _close_in_background(self) -> None:
        # Not in the thread of the last request (its answer is not sent yet), nor in the reload's.
        threading.Thread(target=self.close, kwargs={"grace": self.scraper.scrape_timeout},
                         name="pipeline-close", daemon=True).start()

    def close(self, grace: float = 0.0) -> None:
        """Close now (once): the collectors, after up to ``grace`` seconds for runs still under
        way, then the sync-log source and the database pool."""
        with self._lock:
            if self._closing:
                return
            self._closing = self._retired = True
        try:
            self.scraper.close(grace=grace)
            for part in (self.source, self.db):
                if part is not None:
                    part.close()
        except Exception:  # never seen; the callbacks must run (they forget its secrets)
            log.exception("closing a pipeline failed")
        finally:
            self.closed.set()
            for callback in self._on_closed:
                callback(self)


def build_pipeline(config: Config, *, trimmer: MallocTrimmer | None = None) -> Pipeline:
    """Everything ``config`` enables, ready to scrape (connections are made lazily)."""
    db = Database(config.database) if config.database is not None else None
    source = None
    try:
        source = build_source(config, db)
        collectors = build_collectors(config, db, source)
    except BaseException:
        if source is not None:
            source.close()
        if db is not None:
            db.close()
        raise
    scraper = Scraper(collectors, config.scrape_timeout, trimmer=trimmer)
    return Pipeline(scraper, required=required_collectors(config), db=db, source=source,
                    secrets=iter_secrets(config))


def build_source(config: Config, db: Database | None) -> SyncLogSource | None:
    """The sync log, read once for synclog and business: only when one of them is enabled."""
    c = config.collectors
    if not (c.synclog.enabled or c.business.enabled):
        return None
    from collectors.synclog_source import SyncLogSource

    assert db is not None
    return SyncLogSource(db, c.synclog)


def build_collectors(config: Config, db: Database | None,
                     source: SyncLogSource | None) -> list[Collector]:
    """One collector object per enabled section, in a fixed order; ``source`` is
    :func:`build_source`'s for the same config."""
    c = config.collectors
    out: list[Collector] = []
    if c.synclog.enabled:
        from collectors.synclog import SyncLogCollector

        assert source is not None
        out.append(SyncLogCollector(c.synclog, source=source))
    if c.business.enabled:
        from collectors.business import BusinessCollector

        assert db is not None and source is not None
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
