"""The sync-log collector against a real PostgreSQL, each number checked by an independent query."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from collectors.logtail import OPERATION_TYPES, STATUSES
from collectors.synclog import SyncLogCollector, bucket_thresholds_ms, percentile_cont
from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import DatabaseConfig, SyncLogConfig
from exporter.db import Database
from tests.pg_majors import PgMajor, grant_exporter
from tests.synclog_rows import (
    NOW,
    Clock,
    LogRow,
    Samples,
    insert_rows,
    insert_users,
    pick,
    samples,
    ts,
)

WINDOWS = {"5m": 300, "1h": 3600, "24h": 86400}

pytestmark = pytest.mark.every_pg_major





@pytest.fixture
def make_collector(exporter_dsn: str) -> Iterator[Callable[..., SyncLogCollector]]:
    dbs: list[Database] = []

    def make(clock: Clock | None = None, **config: Any) -> SyncLogCollector:
        db = Database(DatabaseConfig(dsn=exporter_dsn))  # type: ignore[arg-type]
        dbs.append(db)
        return SyncLogCollector(db, SyncLogConfig(**config), clock=clock)

    yield make
    for db in dbs:
        db.close()


def scrape(collector: SyncLogCollector, timeout: float = 10.0) -> Samples:
    """Collect, waiting out the start-up pass (reported as a timeout failure meanwhile)."""
    end = time.monotonic() + timeout
    while True:
        try:
            return samples(collector.collect(Deadline.after(5)))
        except CollectorError as exc:
            if exc.reason is not Reason.TIMEOUT or time.monotonic() > end:
                raise
            time.sleep(0.1)


def truth(conn: psycopg.Connection[Any], now: float, buckets: list[float]) -> dict[str, Any]:
    """Every exported number, recomputed by plain SQL over the table."""
    t = ts(now)
    out: dict[str, Any] = {
        "total": {
            (o, s): n for o, s, n in conn.execute(
                "SELECT operation_type, status, count(*) FROM common_customersynclog GROUP BY 1, 2"
            )
        },
        "newest": {
            (o, s): m.timestamp() for o, s, m in conn.execute(
                "SELECT operation_type, status, max(created_at) FROM common_customersynclog"
                " GROUP BY 1, 2"
            )
        },
        "hist": {},
        "recent": {},
        "pct": {},
        "avg": {},
    }
    for b in buckets:
        for o, n in conn.execute(
            "SELECT operation_type, count(*) FROM common_customersynclog"
            " WHERE duration_ms / 1000.0 <= %s GROUP BY 1", (b,)
        ):
            out["hist"][(o, b)] = n
    for label, seconds in WINDOWS.items():
        where = "created_at > %(t)s - %(w)s * interval '1 second' AND created_at <= %(t)s"
        params = {"t": t, "w": seconds}
        for o, s, n in conn.execute(
            f"SELECT operation_type, status, count(*) FROM common_customersynclog WHERE {where}"
            " GROUP BY 1, 2", params
        ):
            out["recent"][(o, s, label)] = n
        for o, p50, p95, p99, avg in conn.execute(
            "SELECT operation_type,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms / 1000.0),"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms / 1000.0),"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms / 1000.0),"
            " avg(duration_ms / 1000.0)::float8"
            f" FROM common_customersynclog WHERE {where} AND duration_ms IS NOT NULL GROUP BY 1",
            params,
        ):
            out["pct"].update({(o, label, "50"): p50, (o, label, "95"): p95, (o, label, "99"): p99})
            out["avg"][(o, label)] = avg
    return out


def assert_matches_truth(found: Samples, expected: dict[str, Any], buckets: list[float]) -> None:
    totals = pick(found, "customer_sync_operations_total")
    assert {k: v for k, v in totals.items() if v} == {
        (("operation_type", o), ("status", s)): n for (o, s), n in expected["total"].items()
    }
    newest = pick(found, "customer_sync_last_operation_timestamp_seconds")
    assert newest == pytest.approx({
        (("operation_type", o), ("status", s)): v for (o, s), v in expected["newest"].items()
    }, abs=1e-6)
    recent = pick(found, "customer_sync_recent_operations")
    assert {k: v for k, v in recent.items() if v} == {
        (("operation_type", o), ("status", s), ("window", w)): n
        for (o, s, w), n in expected["recent"].items()
    }
    pct = pick(found, "customer_sync_recent_duration_seconds")
    want = {
        (("operation_type", o), ("percentile", p), ("window", w)): v
        for (o, w, p), v in expected["pct"].items()
    }
    assert pct.keys() == want.keys()
    for key, value in want.items():
        assert pct[key] == pytest.approx(value, rel=1e-9), key
    avg = pick(found, "customer_sync_recent_duration_avg_seconds")
    assert avg == pytest.approx({
        (("operation_type", o), ("window", w)): v for (o, w), v in expected["avg"].items()
    }, rel=1e-9)
    buckets_found = pick(found, "customer_sync_operation_duration_seconds_bucket")
    for (o, b), n in expected["hist"].items():
        assert buckets_found[(("le", f"{b:g}"), ("operation_type", o))] == n, (o, b)


def random_rows(rng: random.Random, n: int, now: float, customers: list[int]) -> list[LogRow]:
    ops = [*OPERATION_TYPES, "mystery_op"]
    statuses = [*STATUSES, "weird"]
    rows = []
    for _ in range(n):
        # Mostly recent rows, some old, some a little in the future (clock skew between writers).
        age = rng.choice([rng.uniform(0, 400), rng.uniform(0, 4000), rng.uniform(0, 100_000),
                          rng.uniform(-30, 0)])
        duration = None if rng.random() < 0.3 else rng.choice(
            [rng.randint(0, 50), rng.randint(0, 5000), rng.randint(0, 700_000), 5, 10, 2000]
        )
        rows.append(LogRow(
            rng.choice(ops), rng.choice(statuses), ts(round(now - age, 6)), duration,
            rng.choice([None, *customers]),
        ))
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_batches_between_scrapes_equal_sql(conn, make_collector, seed: int) -> None:
    rng = random.Random(seed)
    clock = Clock()
    customers = insert_users(conn, 5)
    insert_rows(conn, random_rows(rng, 400, clock.now, customers))  # history before start-up
    collector = make_collector(clock)
    buckets = list(collector.buckets)
    assert_matches_truth(scrape(collector), truth(conn, clock.now, buckets), buckets)
    for _ in range(6):
        clock.now += rng.choice([1, 15, 120, 400, 5000])  # windows slide past rows
        insert_rows(conn, random_rows(rng, rng.randint(0, 150), clock.now, customers))
        assert_matches_truth(scrape(collector), truth(conn, clock.now, buckets), buckets)


def test_out_of_order_commit_is_counted_once(db_dsn: str, conn, make_collector) -> None:
    clock = Clock()
    collector = make_collector(clock)
    scrape(collector)
    with psycopg.connect(db_dsn) as slow:  # a transaction that takes the lower id, commits last
        insert_rows(slow, [LogRow("created", "success", ts(NOW - 1))])
        insert_rows(conn, [LogRow("updated", "success", ts(NOW - 1))])
        found = scrape(collector)
        assert found[("customer_sync_operations_total",
                      (("operation_type", "updated"), ("status", "success")))] == 1
        assert found[("customer_sync_exporter_log_pending_gaps", ())] == 1
        slow.commit()
    for _ in range(2):  # seen once, and only once, however often we scrape
        found = scrape(collector)
        assert found[("customer_sync_operations_total",
                      (("operation_type", "created"), ("status", "success")))] == 1
    assert found[("customer_sync_exporter_log_pending_gaps", ())] == 0
    assert found[("customer_sync_exporter_log_rows_read_total", ())] == 2


def test_rolled_back_ids_expire_without_stalling(db_dsn: str, conn, make_collector) -> None:
    clock = Clock()
    collector = make_collector(clock)
    scrape(collector)
    with psycopg.connect(db_dsn) as aborted:
        insert_rows(aborted, [LogRow("created", "success", ts(NOW - 1))] * 3)
        aborted.rollback()
    insert_rows(conn, [LogRow("updated", "success", ts(NOW - 1))])
    found = scrape(collector)
    assert found[("customer_sync_exporter_log_pending_gaps", ())] == 3
    time.sleep(1.1)  # the settle period before a snapshot horizon is taken
    scrape(collector)
    found = scrape(collector)
    assert found[("customer_sync_exporter_log_pending_gaps", ())] == 0
    insert_rows(conn, [LogRow("updated", "success", ts(NOW - 1))])
    found = scrape(collector)
    assert found[("customer_sync_operations_total",
                  (("operation_type", "updated"), ("status", "success")))] == 2
    assert found[("customer_sync_operations_total",
                  (("operation_type", "created"), ("status", "success")))] == 0


def test_gaps_left_by_transactions_in_flight_during_startup(db_dsn: str, conn,
                                                             make_collector) -> None:
    clock = Clock()
    with psycopg.connect(db_dsn) as slow:
        insert_rows(slow, [LogRow("created", "success", ts(NOW - 5))])
        insert_rows(conn, [LogRow("updated", "success", ts(NOW - 5))] * 2)
        collector = make_collector(clock)
        assert scrape(collector)[("customer_sync_exporter_log_pending_gaps", ())] == 1
        slow.commit()
    found = scrape(collector)
    assert found[("customer_sync_operations_total",
                  (("operation_type", "created"), ("status", "success")))] == 1
    assert sum(pick(found, "customer_sync_operations_total").values()) == 3


def test_retention_delete_changes_nothing_exported(conn, make_collector) -> None:
    clock = Clock()
    insert_rows(conn, [LogRow("created", "success", ts(NOW - 100 * 86400))] * 5)
    insert_rows(conn, [LogRow("updated", "success", ts(NOW - 10))] * 3)
    collector = make_collector(clock)
    before = scrape(collector)
    conn.execute("DELETE FROM common_customersynclog WHERE created_at < %s", (ts(NOW - 90 * 86400),))
    after = scrape(collector)
    assert after == before
    assert pick(after, "customer_sync_operations_total")[
        (("operation_type", "created"), ("status", "success"))] == 5


def test_truncated_table_is_read_again(conn, make_collector) -> None:
    clock = Clock()
    insert_rows(conn, [LogRow("created", "success", ts(NOW - 10))] * 4)
    collector = make_collector(clock)
    assert sum(pick(scrape(collector), "customer_sync_operations_total").values()) == 4
    conn.execute("TRUNCATE common_customersynclog")
    with pytest.raises(CollectorError) as failed:
        collector.collect(Deadline.after(5))
    assert "truncated or restored" in failed.value.message
    found = scrape(collector)
    assert sum(pick(found, "customer_sync_operations_total").values()) == 0
    assert sum(pick(found, "customer_sync_recent_operations").values()) == 0
    insert_rows(conn, [LogRow("skipped", "success", ts(NOW - 10))] * 2)
    found = scrape(collector)
    assert sum(pick(found, "customer_sync_operations_total").values()) == 2
    assert pick(found, "customer_sync_recent_operations", window="5m")[
        (("operation_type", "skipped"), ("status", "success"))] == 2


def test_production_rows_without_duration_and_legacy_values(conn, make_collector) -> None:
    clock = Clock()
    insert_rows(conn, [LogRow("created", "success", ts(NOW - 10), session="7")] * 3)
    insert_rows(conn, [LogRow("identify_customer", "not_found", ts(NOW - 10))])
    found = scrape(make_collector(clock))
    assert pick(found, "customer_sync_operations_total")[
        (("operation_type", "identify_customer"), ("status", "not_found"))] == 1
    assert not pick(found, "customer_sync_operation_duration_seconds_count")
    assert not pick(found, "customer_sync_recent_duration_seconds")  # no 0 s p95 (bug 7)
    # Every declared type x status is there, 0 when absent.
    recent = pick(found, "customer_sync_recent_operations", window="1h")
    assert len(recent) == len(OPERATION_TYPES) * len(STATUSES)
    assert recent[(("operation_type", "export_to_1c"), ("status", "pending"))] == 0


def test_unknown_values_are_capped(conn, make_collector) -> None:
    clock = Clock()
    insert_rows(conn, [LogRow(f"op{i}", "success", ts(NOW - 10)) for i in range(5)])
    found = scrape(make_collector(clock, max_label_values=2))
    totals = {dict(k)["operation_type"]: v for k, v in
              pick(found, "customer_sync_operations_total", status="success").items()}
    own = {k: v for k, v in totals.items() if k.startswith("op")}
    assert len(own) == 2 and set(own.values()) == {1}  # which two come first is arbitrary
    assert totals["other"] == 3


def test_startup_pass_blocked_reports_timeout_then_recovers(db_dsn: str, conn,
                                                           make_collector) -> None:
    insert_rows(conn, [LogRow("created", "success", ts(NOW - 10))] * 3)
    locker = psycopg.connect(db_dsn)
    locker.execute("LOCK TABLE common_customersynclog IN ACCESS EXCLUSIVE MODE")
    collector = make_collector(Clock())
    started = time.monotonic()
    with pytest.raises(CollectorError) as failed:
        collector.collect(Deadline.after(2))
    assert time.monotonic() - started < 2
    assert failed.value.reason is Reason.TIMEOUT
    assert "start-up" in failed.value.message
    threading.Timer(0.3, locker.close).start()
    assert sum(pick(scrape(collector), "customer_sync_operations_total").values()) == 3


def test_database_outage_loses_and_duplicates_nothing(pg_major: PgMajor) -> None:
    from tests.conftest import server_dir

    server = pg_major.server(server_dir("outage")).start()
    try:
        dsn = server.create_database()
        db = Database(DatabaseConfig(dsn=grant_exporter(server, "freesport")))  # type: ignore[arg-type]
        collector = SyncLogCollector(db, SyncLogConfig(), clock=Clock())
        with psycopg.connect(dsn, autocommit=True) as c:
            insert_rows(c, [LogRow("created", "success", ts(NOW - 10))] * 5)
        assert sum(pick(scrape(collector), "customer_sync_operations_total").values()) == 5
        with psycopg.connect(dsn, autocommit=True) as c:
            insert_rows(c, [LogRow("updated", "success", ts(NOW - 10))] * 2)
        server.kill()
        with pytest.raises(CollectorError) as failed:
            collector.collect(Deadline.after(3))
        assert failed.value.reason is Reason.CONNECT
        assert "password" not in failed.value.message.lower() or server.password not in (
            failed.value.message)
        server.start()
        with psycopg.connect(dsn, autocommit=True) as c:
            insert_rows(c, [LogRow("error", "failed", ts(NOW - 10))] * 3)
        found = None
        for _ in range(20):  # the pool reconnects in the background
            try:
                found = scrape(collector)
                break
            except CollectorError:
                time.sleep(0.25)
        assert found is not None
        totals = pick(found, "customer_sync_operations_total")
        assert sum(totals.values()) == 10
        assert totals[(("operation_type", "updated"), ("status", "success"))] == 2
        db.close()
    finally:
        server.stop()


def test_percentile_cont_matches_definition() -> None:
    from sortedcontainers import SortedList

    values = SortedList([1, 2, 3, 4, 10])
    assert percentile_cont(values, 0.5) == 3
    assert percentile_cont(values, 0.95) == pytest.approx(4 + 0.8 * 6)
    assert percentile_cont(SortedList([7]), 0.99) == 7


def test_bucket_thresholds_are_whole_milliseconds() -> None:
    assert bucket_thresholds_ms([0.005, 0.1, 0.29, 0.7, 2.0]) == [5, 100, 290, 700, 2000]


def test_ten_concurrent_writers_with_rollbacks_are_counted_exactly(db_dsn: str, conn,
                                                                   make_collector) -> None:
    """Transactions of different lengths commit out of id order, some roll back."""
    clock = Clock()
    collector = make_collector(clock)
    scrape(collector)
    stop = time.monotonic() + 3

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        with psycopg.connect(db_dsn) as c:
            while time.monotonic() < stop:
                insert_rows(c, [LogRow("updated", "success", ts(NOW - 1))] * rng.randint(1, 5))
                time.sleep(rng.uniform(0, 0.05))
                if rng.random() < 0.2:
                    c.rollback()
                else:
                    c.commit()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        scrape(collector)  # scrapes race the writers
        time.sleep(0.02)
    found = scrape(collector)
    (count,) = conn.execute("SELECT count(*) FROM common_customersynclog").fetchone()
    assert count > 100
    assert pick(found, "customer_sync_operations_total")[
        (("operation_type", "updated"), ("status", "success"))] == count
    # Rolled-back ids are forgotten once no transaction older than them runs; a concurrent
    # autovacuum can hold an xid for a moment, so allow a few seconds.
    end = time.monotonic() + 10
    while found[("customer_sync_exporter_log_pending_gaps", ())] and time.monotonic() < end:
        time.sleep(0.2)
        found = scrape(collector)
    assert found[("customer_sync_exporter_log_pending_gaps", ())] == 0
    assert pick(found, "customer_sync_operations_total")[
        (("operation_type", "updated"), ("status", "success"))] == count


def test_truncate_and_refill_in_one_transaction_is_noticed(db_dsn: str, conn,
                                                             make_collector) -> None:
    """max(id) never goes backwards here; the replaced relation file gives it away."""
    collector = make_collector(Clock())
    insert_rows(conn, [LogRow("created", "success", ts(NOW - 10))] * 3)
    assert sum(pick(scrape(collector), "customer_sync_operations_total").values()) == 3
    with psycopg.connect(db_dsn) as tx:
        tx.execute("TRUNCATE common_customersynclog")
        insert_rows(tx, [LogRow("updated", "success", ts(NOW - 10))] * 5)
    with pytest.raises(CollectorError):
        collector.collect(Deadline.after(5))
    found = scrape(collector)
    totals = pick(found, "customer_sync_operations_total")
    assert sum(totals.values()) == 5
    assert totals[(("operation_type", "updated"), ("status", "success"))] == 5
