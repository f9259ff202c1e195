"""Assembling the collectors from a config: the sync log is one source for synclog and business,
built only when one of them is enabled, and closed with the collectors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from collectors.business import BusinessCollector
from collectors.synclog import SyncLogCollector
from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import COLLECTOR_NAMES, Config
from exporter.db import Database
from exporter.scrape import Scraper
from exporter.service import build_collectors


def config(*enabled: str) -> Config:
    return Config.model_validate({
        "database": {"dsn": "postgresql://exporter@127.0.0.1:1/freesport"},
        "collectors": {name: {"enabled": name in enabled} for name in COLLECTOR_NAMES},
    })


@pytest.fixture
def db() -> Iterator[Database]:
    database = Database(config().database)  # type: ignore[arg-type]
    yield database  # never opened: nothing here connects
    database.close()


def test_synclog_and_business_share_one_source(db: Database) -> None:
    synclog, business = build_collectors(config("synclog", "business"), db)
    assert isinstance(synclog, SyncLogCollector) and isinstance(business, BusinessCollector)
    assert synclog.source is business.source


def test_business_alone_gets_a_source_and_no_synclog_collector(db: Database) -> None:
    (business,) = build_collectors(config("business"), db)
    assert isinstance(business, BusinessCollector)
    assert [c.name for c in build_collectors(config("postgres"), db)] == ["postgres"]


def test_the_source_closes_with_the_collectors(db: Database) -> None:
    synclog, business = build_collectors(config("synclog", "business"), db)
    Scraper([synclog, business], 5.0, process_collector=False).close()
    with pytest.raises(CollectorError) as closed:
        synclog.collect(Deadline.after(1))  # business reads the same source, closed too
    assert closed.value.reason is Reason.INTERNAL and "closed" in closed.value.message
