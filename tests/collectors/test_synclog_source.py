"""The shared sync-log source on real PostgreSQL: one read of the table for both collectors,
a collector closed leaves the other reading, and a start-up pass in flight is cancelled in
PostgreSQL when the source is closed (by its owner, the pipeline, after the collectors)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from collectors.business import BusinessCollector
from collectors.synclog import SyncLogCollector
from collectors.synclog_source import SyncLogSource, bucket_thresholds_ms
from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import BusinessConfig, DatabaseConfig, SyncLogConfig
from exporter.db import Database
from tests.pg_majors import EXPORTER_ROLE
from tests.synclog_rows import NOW, Clock, LogRow, Samples, insert_rows, pick, samples, ts

pytestmark = pytest.mark.every_pg_major


def test_bucket_thresholds_are_whole_milliseconds() -> None:
    assert bucket_thresholds_ms([0.005, 0.1, 0.29, 0.7, 2.0]) == [5, 100, 290, 700, 2000]


@pytest.fixture
def db(exporter_dsn: str) -> Iterator[Database]:
    database = Database(DatabaseConfig(dsn=exporter_dsn))  # type: ignore[arg-type]
    yield database
    database.close()


def collectors(db: Database) -> tuple[SyncLogCollector, BusinessCollector]:
    source = SyncLogSource(db, SyncLogConfig(), clock=Clock(), monotonic=Clock(0.0))
    return (SyncLogCollector(SyncLogConfig(), source=source),
            BusinessCollector(db, BusinessConfig(), source=source))


def scrape(collect: Callable[[Deadline], list[Any]]) -> Samples:
    """Collect, waiting out the start-up pass."""
    end = time.monotonic() + 10
    while True:
        try:
            return samples(collect(Deadline.after(5)))
        except CollectorError as exc:
            if "start-up" not in exc.message or time.monotonic() > end:
                raise
            time.sleep(0.1)


def test_both_collectors_read_each_row_once(conn: psycopg.Connection[Any], db: Database) -> None:
    synclog, business = collectors(db)
    assert synclog.source is business.source
    insert_rows(conn, [LogRow("conflict_resolution", "success", ts(NOW - 5), 3, None,
                              {"conflict_source": "data_import"})] * 4)
    scrape(business.collect)
    insert_rows(conn, [LogRow("conflict_resolution", "error", ts(NOW - 5))] * 2)
    from_business = pick(scrape(business.collect), "customer_sync_conflicts_total")
    found = scrape(synclog.collect)
    (count,) = conn.execute("SELECT count(*) FROM common_customersynclog").fetchone() or (0,)
    assert found[("customer_sync_exporter_log_rows_read_total", ())] == count == 6
    by_status = pick(found, "customer_sync_operations_total", operation_type="conflict_resolution")
    assert by_status[(("status", "success"),)] == 4 and by_status[(("status", "error"),)] == 2
    assert from_business[(("source", "data_import"), ("status", "success"))] == 4
    assert from_business[(("source", "unknown"), ("status", "error"))] == 2


def test_a_closed_collector_leaves_the_source_to_the_other(conn: psycopg.Connection[Any],
                                                            db: Database) -> None:
    synclog, business = collectors(db)
    insert_rows(conn, [LogRow("created", "success", ts(NOW - 5))] * 3)
    scrape(synclog.collect)
    synclog.close()
    insert_rows(conn, [LogRow("conflict_resolution", "success", ts(NOW - 5))])
    assert sum(pick(scrape(business.collect), "customer_sync_conflicts_total").values()) == 1
    business.source.close()
    with pytest.raises(CollectorError) as closed:
        business.collect(Deadline.after(5))
    assert closed.value.reason is Reason.INTERNAL and "closed" in closed.value.message


def test_closing_cancels_a_start_up_pass_in_flight(db_dsn: str, conn: psycopg.Connection[Any],
                                                   db: Database) -> None:
    """The pass waits for a lock (as it would read a big table): closing the collectors leaves
    it running; closing the source cancels its query and ends its connection, though the lock is
    still held."""

    def backends(waiting_for_a_lock: bool = True) -> int:
        (n,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND datname ="
            " current_database() AND (wait_event_type = 'Lock' OR NOT %s)",
            (EXPORTER_ROLE, waiting_for_a_lock)).fetchone() or (0,)
        return int(n)

    with psycopg.connect(db_dsn) as locker:
        locker.execute("LOCK TABLE common_customersynclog IN ACCESS EXCLUSIVE MODE")
        synclog, business = collectors(db)
        with pytest.raises(CollectorError) as starting:
            synclog.collect(Deadline.after(2))
        assert starting.value.reason is Reason.TIMEOUT and "start-up" in starting.value.message
        assert backends() == 1
        synclog.close()
        time.sleep(0.3)
        assert backends() == 1  # business still reads the source: the pass goes on
        business.close()
        time.sleep(0.3)
        assert backends() == 1  # the source is not theirs to close
        business.source.close()
        end = time.monotonic() + 5
        while backends(waiting_for_a_lock=False) and time.monotonic() < end:
            time.sleep(0.05)
        assert backends(waiting_for_a_lock=False) == 0  # the pass's connection is gone
        assert locker.execute("SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock'"
                              " AND pid = pg_backend_pid()").fetchone() == (1,)
