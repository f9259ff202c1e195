"""A pipeline without a server: what a config builds (one sync-log source for synclog and
business, only when one of them is enabled), and when it closes (never under a request, and
not under a collector run still finishing, but without waiting for one past its grace)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.business import BusinessCollector
from collectors.synclog import SyncLogCollector
from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import COLLECTOR_NAMES, Config
from exporter.pipeline import Pipeline, build_pipeline
from exporter.scrape import Scraper

DSN = "postgresql://exporter:pipe-Secret-41@127.0.0.1:1/freesport"  # never connected to


def config(*enabled: str, required: bool = False) -> Config:
    return Config.model_validate({
        "database": {"dsn": DSN, "required": required},
        "collectors": {name: {"enabled": name in enabled} for name in COLLECTOR_NAMES},
    })


@pytest.fixture
def built() -> Iterator[list[Pipeline]]:
    pipelines: list[Pipeline] = []
    yield pipelines
    for p in pipelines:
        p.close()


def test_synclog_and_business_share_one_source_the_pipeline_owns(built: list[Pipeline]) -> None:
    p = build_pipeline(config("synclog", "business"))
    built.append(p)
    synclog, business = p.scraper.collectors
    assert isinstance(synclog, SyncLogCollector) and isinstance(business, BusinessCollector)
    assert synclog.source is business.source is p.source


def test_business_alone_gets_a_source_and_other_collectors_none(built: list[Pipeline]) -> None:
    business_only = build_pipeline(config("business"))
    postgres_only = build_pipeline(config("postgres"))
    built += [business_only, postgres_only]
    assert business_only.scraper.collector_names == ["business"]
    assert business_only.source is not None
    assert postgres_only.scraper.collector_names == ["postgres"] and postgres_only.source is None


def test_closing_the_pipeline_closes_the_source_after_the_collectors() -> None:
    p = build_pipeline(config("synclog", "business"))
    synclog, _business = p.scraper.collectors
    p.close()
    with pytest.raises(CollectorError) as closed:
        synclog.collect(Deadline.after(1))
    assert closed.value.reason is Reason.INTERNAL and "closed" in closed.value.message
    assert p.closed.is_set()


def test_required_collectors_and_secrets_come_from_the_config(built: list[Pipeline]) -> None:
    p = build_pipeline(config("synclog", "postgres", "disk", required=True))
    built.append(p)
    assert p.required == {"synclog", "postgres"}  # the database's collectors; disk has none
    assert "pipe-Secret-41" in p.secrets


@dataclass
class Held:
    """A collector whose run lasts until the test lets it go; notes when it is closed."""

    name: str = "held"
    release: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    closed_at: float | None = None
    finished_at: float | None = None

    def collect(self, deadline: Deadline) -> Iterable[Metric]:
        self.started.set()
        self.release.wait(10)
        self.finished_at = time.monotonic()
        return [GaugeMetricFamily("customer_sync_held_value", "test", value=1.0)]

    def close(self) -> None:
        self.closed_at = time.monotonic()


def test_a_retired_pipeline_closes_when_its_last_request_leaves() -> None:
    held = Held()
    held.release.set()
    p = Pipeline(Scraper([held], 5.0, process_collector=False))
    closed: list[Pipeline] = []
    p.enter()
    p.enter()
    p.retire(on_closed=closed.append)
    with pytest.raises(RuntimeError, match="retired"):
        p.enter()  # no new request
    p.leave()
    time.sleep(0.2)
    assert held.closed_at is None and not p.closed.is_set()  # one request is still inside
    p.leave()
    assert p.closed.wait(5) and closed == [p] and held.closed_at is not None


def test_closing_waits_for_a_run_under_way_up_to_the_scrape_timeout() -> None:
    held = Held()
    p = Pipeline(Scraper([held], 2.0, process_collector=False))
    with p.used():
        p.scraper.scrape(Deadline.after(0.2))  # the run outlives its scrape: it still holds on
    assert held.started.is_set() and held.finished_at is None
    p.retire()
    time.sleep(0.3)
    assert held.closed_at is None  # not closed under the run
    held.release.set()
    assert p.closed.wait(5)
    assert held.finished_at is not None and held.closed_at is not None
    assert held.closed_at >= held.finished_at


def test_a_run_that_never_ends_is_closed_under_after_the_grace() -> None:
    held = Held()
    p = Pipeline(Scraper([held], 0.5, process_collector=False))
    p.scraper.scrape(Deadline.after(0.1))
    started = time.monotonic()
    p.retire()
    assert p.closed.wait(5)
    assert held.finished_at is None and held.closed_at is not None
    assert 0.4 <= held.closed_at - started < 3.0  # the scrape timeout, not forever
    held.release.set()
