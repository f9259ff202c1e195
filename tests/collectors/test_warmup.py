"""The start-up pass against PostgreSQL: the window rows, read from a guessed first id while
the count runs beside, are every window row whatever order ids and created_at are in, each
read once.

Every number is checked against SQL (the ground truth of tests/collectors/test_synclog.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors import warmup
from collectors.synclog import SyncLogCollector
from exporter.collector import CollectorError
from exporter.config import DatabaseConfig, SyncLogConfig
from exporter.db import Database
from tests.collectors.test_synclog import (
    assert_matches_truth,
    scrape,
    scrape_reconnected,
    truth,
)
from tests.synclog_rows import (
    NOW,
    Clock,
    LogRow,
    insert_rows,
    pick,
    samples,
    synclog_collector,
    ts,
)

DAY = 86400.0

pytestmark = pytest.mark.every_pg_major


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """What the pass did, in order: each window-row read with its id range, and the count
    with the thread it ran in."""
    seen: list[tuple[str, int, int]] = []
    read, count = warmup.StartupPass._read_recent, warmup.StartupPass._groups

    def spy_read(self: warmup.StartupPass, conn: psycopg.Connection[Any], lo: int, hi: int,
                 cutoff: Any) -> None:
        seen.append(("read", lo, hi))
        read(self, conn, lo, hi, cutoff)

    def spy_count(self: warmup.StartupPass, conn: psycopg.Connection[Any], hi: int,
                  *args: Any) -> Any:
        counted = count(self, conn, hi, *args)
        seen.append((f"count in {threading.current_thread().name}", hi, counted[1]))
        return counted

    monkeypatch.setattr(warmup.StartupPass, "_read_recent", spy_read)
    monkeypatch.setattr(warmup.StartupPass, "_groups", spy_count)
    return seen


@pytest.fixture
def started(exporter_dsn: str) -> Iterator[Any]:
    dbs: list[Database] = []

    def start(clock: Clock, **seams: Any) -> SyncLogCollector:
        db = Database(DatabaseConfig(dsn=exporter_dsn))  # type: ignore[arg-type]
        dbs.append(db)
        return synclog_collector(db, SyncLogConfig(), clock=clock, **seams)

    yield start
    for db in dbs:
        db.close()


def test_window_rows_below_the_guess_are_read_after_the_count(conn, started, reads) -> None:
    """Recent rows at the lowest ids, then old ones (a clock set back, a backfill): the search
    guesses the window starts high, and the rows below it are read once the count is done."""
    clock = Clock()
    insert_rows(conn, [LogRow("created", "success", ts(NOW - 60), 5)] * 3)  # ids 1-3
    insert_rows(conn, [LogRow("updated", "success", ts(NOW - 3 * DAY))] * 20)  # ids 4-23
    insert_rows(conn, [LogRow("error", "failed", ts(NOW - 10), 7)] * 4)  # ids 24-27
    collector = started(clock)
    buckets = list(collector.buckets)
    assert_matches_truth(scrape(collector), truth(conn, clock.now, buckets), buckets)
    # The guess (24) is read while the count runs beside; the ids below it, once it is done.
    assert reads == [("read", 24, 27), ("count in warmup-count", 27, 27), ("read", 1, 23)]


def test_a_guess_on_a_lone_recent_row_reads_past_old_ones(conn, started, reads) -> None:
    """A row dated in the future amid old ones: the search starts the window there, the old
    rows after it are passed over in PostgreSQL, and nothing is read twice."""
    clock = Clock()
    insert_rows(conn, [LogRow("updated", "success", ts(NOW - 2 * DAY))] * 8)
    insert_rows(conn, [LogRow("created", "success", ts(NOW + 30), 3)])  # id 9
    insert_rows(conn, [LogRow("updated", "success", ts(NOW - 2 * DAY))] * 8)
    collector = started(clock)
    buckets = list(collector.buckets)
    assert_matches_truth(scrape(collector), truth(conn, clock.now, buckets), buckets)
    assert reads == [("read", 9, 17), ("count in warmup-count", 17, 17)]
    clock.now += 60  # the future row enters the windows as time reaches it
    assert_matches_truth(scrape(collector), truth(conn, clock.now, buckets), buckets)


def test_gap_limit_stop_forgets_what_was_read_beside(db_dsn: str, conn, started) -> None:
    """The pass stops short at the gap limit, after the rows beside were read to the top: the
    windows hold only the rows up to the stop, like the counters."""
    for _ in range(4):  # committed, rolled back, ...
        insert_rows(conn, [LogRow("updated", "success", ts(NOW - 5))])
        with psycopg.connect(db_dsn) as aborted:
            insert_rows(aborted, [LogRow("created", "success", ts(NOW - 5))])
            aborted.rollback()
    insert_rows(conn, [LogRow("updated", "success", ts(NOW - 5))])
    collector = started(Clock(), monotonic=Clock(0.0), max_gap_ranges=2)
    with pytest.raises(CollectorError) as stopped:
        scrape(collector)
    assert "gap limit reached" in stopped.value.message
    found = samples(stopped.value.partial)
    for name in ("customer_sync_operations_total", "customer_sync_recent_operations"):
        values = pick(found, name, **({"window": "24h"} if "recent" in name else {}))
        assert {dict(k)["operation_type"]: v for k, v in values.items() if v} == {
            "updated": 3}, name  # ids 1, 3, 5; not 7 and 9, past the stop


def test_without_a_second_connection_the_pass_reads_alone(db_dsn: str, conn, started,
                                                         reads) -> None:
    """The database admits one connection besides the test's: the count cannot run beside, so
    the pass counts on its own connection once it has read from the guess, exactly."""
    conn.execute(f'ALTER DATABASE "{db_dsn.rsplit("/", 1)[1]}" CONNECTION LIMIT 2')
    clock = Clock()
    insert_rows(conn, [LogRow("created", "success", ts(NOW - 60), 5)] * 3)
    insert_rows(conn, [LogRow("updated", "success", ts(NOW - 3 * DAY))] * 5)
    insert_rows(conn, [LogRow("error", "failed", ts(NOW - 10), 7)] * 2)
    collector = started(clock)
    buckets = list(collector.buckets)
    found = scrape_reconnected(collector, 10)  # the pool's connection waits for the pass's slot
    assert_matches_truth(found, truth(conn, clock.now, buckets), buckets)
    # The guess (9) is read first; then the count, on the pass's connection; then the rest.
    assert reads == [("read", 9, 10), ("count in warmup-common_customersynclog", 10, 10), ("read", 1, 8)]


rows = st.lists(st.tuples(
    st.sampled_from(["created", "updated", "error", "customer_identification"]),
    st.sampled_from(["success", "failed"]),
    st.one_of(st.floats(-40, 3 * DAY), st.just(DAY), st.just(-1.0)),  # age: in, at, past the edge
    st.one_of(st.none(), st.integers(0, 5000)),
), min_size=0, max_size=60)


@pytest.mark.one_pg_major
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=rows)
def test_start_up_equals_sql_whatever_the_order_of_ids_and_times(conn, started, batch) -> None:
    conn.execute("TRUNCATE common_customersynclog RESTART IDENTITY")
    clock = Clock()
    insert_rows(conn, [LogRow(o, s, ts(NOW - age), d) for o, s, age, d in batch])
    collector = started(clock)
    buckets = list(collector.buckets)
    assert_matches_truth(scrape(collector), truth(conn, clock.now, buckets), buckets)
    collector.source.close()
