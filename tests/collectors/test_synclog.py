"""The sync-log collector against a real PostgreSQL, each number checked by an independent query."""

from __future__ import annotations

import random
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from collectors.logrows import OPERATION_TYPES, STATUSES
from collectors.logtail import MAX_GAP_RANGES
from collectors.sorted_ints import SortedInts
from collectors.synclog import SyncLogCollector, percentile_cont
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
    synclog_collector,
    ts,
)

WINDOWS = {"5m": 300, "1h": 3600, "24h": 86400}

pytestmark = pytest.mark.every_pg_major





@pytest.fixture
def make_collector(exporter_dsn: str) -> Iterator[Callable[..., SyncLogCollector]]:
    dbs: list[Database] = []

    def make(clock: Clock | None = None, monotonic: Callable[[], float] = time.monotonic,
             max_gap_ranges: int = MAX_GAP_RANGES, **config: Any) -> SyncLogCollector:
        db = Database(DatabaseConfig(dsn=exporter_dsn))  # type: ignore[arg-type]
        dbs.append(db)
        return synclog_collector(db, SyncLogConfig(**config), clock=clock, monotonic=monotonic,
                                 max_gap_ranges=max_gap_ranges)

    yield make
    for db in dbs:
        db.close()


def scrape(collector: SyncLogCollector, timeout: float = 10.0) -> Samples:
    """Collect, waiting out the start-up pass and catching up (timeout failures meanwhile)."""
    end = time.monotonic() + timeout
    while True:
        try:
            return samples(collector.collect(Deadline.after(5)))
        except CollectorError as exc:
            waiting = "start-up" in exc.message or "catching up" in exc.message
            if exc.reason is not Reason.TIMEOUT or not waiting or time.monotonic() > end:
                raise
            time.sleep(0.1)


def scrape_reconnected(collector: SyncLogCollector, seconds: float) -> Samples:
    """Scrape once the pool has reconnected, in the background, after a server restart."""
    end = time.monotonic() + seconds
    while True:
        try:
            return scrape(collector)
        except CollectorError:
            if time.monotonic() > end:
                raise
            time.sleep(0.25)


def exported(value: str | None) -> str:
    """The label a raw operation_type or status is exported under, by the rule the README gives
    (1 to 100 characters, none of Unicode's Other or Separator classes but the space)."""
    if value is None or not 1 <= len(value) <= 100:
        return "other"
    if any(unicodedata.category(c)[0] in "CZ" and c != " " for c in value):
        return "other"
    return value


# created_at has a place in time when its Unix microseconds fit in 64 bits (not +-infinity).
FITS = ("created_at > '-infinity'"
        " AND extract(epoch FROM created_at) * 1000000 <= 9223372036854775807")

# Every query groups by the exported labels: a join maps each raw value to its label.
_LABELS = (
    " FROM common_customersynclog JOIN unnest(%(op_raw)s::text[], %(op_label)s::text[])"
    " AS o(raw, label) ON o.raw IS NOT DISTINCT FROM operation_type"
    " JOIN unnest(%(st_raw)s::text[], %(st_label)s::text[]) AS s(raw, label)"
    " ON s.raw IS NOT DISTINCT FROM status"
)


def scrape_until(collector: SyncLogCollector, done: Callable[[Samples], bool],
                 timeout: float = 10.0) -> Samples:
    """Scrape until ``done``: an autovacuum or autoanalyze may hold a transaction id for a
    moment, which holds the snapshot horizon back."""
    end = time.monotonic() + timeout
    found = scrape(collector)
    while not done(found) and time.monotonic() < end:
        time.sleep(0.1)
        found = scrape(collector)
    return found


def truth(conn: psycopg.Connection[Any], now: float, buckets: list[float]) -> dict[str, Any]:
    """Every exported number, recomputed by plain SQL over the table. Rows count wherever their
    values allow: a created_at of +-infinity is in no window and no newest time, a negative
    duration is no duration."""
    t = ts(now)
    params: dict[str, Any] = {"t": t}
    for key, column in (("op", "operation_type"), ("st", "status")):
        raw = [r[0] for r in conn.execute(f"SELECT DISTINCT {column} FROM common_customersynclog")]
        params[f"{key}_raw"], params[f"{key}_label"] = raw, [exported(v) for v in raw]

    def rows(query: str, **extra: Any) -> list[tuple[Any, ...]]:
        return conn.execute(query, {**params, **extra}).fetchall()

    out: dict[str, Any] = {
        "total": {(o, s): n for o, s, n in rows(
            "SELECT o.label, s.label, count(*)" + _LABELS + " GROUP BY 1, 2")},
        "newest": {(o, s): m for o, s, m in rows(
            "SELECT o.label, s.label,"
            f" extract(epoch FROM max(created_at) FILTER (WHERE {FITS}))::float8"
            + _LABELS + " GROUP BY 1, 2") if m is not None},
        "hist": {},
        "recent": {},
        "pct": {},
        "avg": {},
    }
    for b in buckets:
        for o, n in rows("SELECT o.label, count(*)" + _LABELS + " WHERE duration_ms >= 0 AND"
                         " duration_ms / 1000.0 <= %(b)s GROUP BY 1", b=b):
            out["hist"][(o, b)] = n
    for label, seconds in WINDOWS.items():
        where = " WHERE created_at > %(t)s - %(w)s * interval '1 second' AND created_at <= %(t)s"
        for o, s, n in rows("SELECT o.label, s.label, count(*)" + _LABELS + where
                            + " GROUP BY 1, 2", w=seconds):
            out["recent"][(o, s, label)] = n
        for o, p50, p95, p99, avg in rows(
            "SELECT o.label,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms / 1000.0),"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms / 1000.0),"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms / 1000.0),"
            " avg(duration_ms / 1000.0)::float8" + _LABELS + where
            + " AND duration_ms >= 0 GROUP BY 1", w=seconds,
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


def test_a_quiet_scrape_builds_only_the_windows_that_changed(conn, make_collector) -> None:
    """Families are reused while their numbers stand still, and rebuilt (right) once not."""
    clock = Clock()
    insert_rows(conn, [LogRow("created", "success", ts(NOW - 100), 40),
                       LogRow("updated", "error", ts(NOW - 7200), 900)])
    collector = make_collector(clock)
    buckets = list(collector.buckets)
    scrape(collector)

    def by_name() -> dict[str, Any]:
        return {f.name: f for f in collector.collect(Deadline.after(5))}

    def window_samples(families: dict[str, Any], window: str,
                       names: tuple[str, ...] = ("customer_sync_recent_operations",
                                                 "customer_sync_recent_duration_seconds"),
                       ) -> list[Any]:
        return [s for name in names for s in families[name].samples
                if s.labels["window"] == window]

    first = by_name()
    clock.now += 1  # nothing enters or leaves a window
    second = by_name()
    assert second["customer_sync_operations"] is first["customer_sync_operations"]
    for window in WINDOWS:
        assert all(a is b for a, b in zip(window_samples(first, window),
                                          window_samples(second, window), strict=True))
    clock.now += 250  # the row at NOW - 100 leaves the 5m window, and only that window
    third = by_name()
    assert third["customer_sync_operations"] is first["customer_sync_operations"]
    counts = ("customer_sync_recent_operations",)
    pairs = list(zip(window_samples(first, "5m", counts), window_samples(third, "5m", counts),
                     strict=True))
    moved = [(a, b) for a, b in pairs if a.value != b.value]
    assert [(b.labels["operation_type"], b.labels["status"], b.value) for _, b in moved] == [
        ("created", "success", 0)]
    # The count that moved is a new sample; every count that stood still keeps its sample.
    assert all((a is b) == (a.value == b.value) for a, b in pairs)
    for window in ("1h", "24h"):
        assert all(a is b for a, b in zip(window_samples(first, window),
                                          window_samples(third, window), strict=True))
    assert_matches_truth(samples(list(third.values())), truth(conn, clock.now, buckets), buckets)
    insert_rows(conn, [LogRow("created", "success", ts(clock.now - 1), 70)])
    fourth = by_name()
    assert fourth["customer_sync_operations"] is not first["customer_sync_operations"]
    assert_matches_truth(samples(list(fourth.values())), truth(conn, clock.now, buckets), buckets)


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
    clock, monotonic = Clock(), Clock(0.0)
    collector = make_collector(clock, monotonic)
    scrape(collector)
    with psycopg.connect(db_dsn) as aborted:
        insert_rows(aborted, [LogRow("created", "success", ts(NOW - 1))] * 3)
        aborted.rollback()
    insert_rows(conn, [LogRow("updated", "success", ts(NOW - 1))])
    found = scrape(collector)
    assert found[("customer_sync_exporter_log_pending_gaps", ())] == 3
    monotonic.now += 0.9  # within the settle period: the ids are still waited for
    found = scrape(collector)
    assert found[("customer_sync_exporter_log_pending_gaps", ())] == 3
    monotonic.now += 0.2  # settled: a snapshot horizon is taken, and passed at once (no writer)
    found = scrape_until(collector, lambda f: f[("customer_sync_exporter_log_pending_gaps", ())]
                         == 0)
    assert found[("customer_sync_exporter_log_gaps_expired_total", ())] == 3
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
        collector = synclog_collector(db, clock=Clock())
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
        totals = pick(scrape_reconnected(collector, 5), "customer_sync_operations_total")
        assert sum(totals.values()) == 10
        assert totals[(("operation_type", "updated"), ("status", "success"))] == 2
        db.close()
    finally:
        server.stop()


def test_percentile_cont_matches_definition() -> None:
    values = SortedInts([1, 2, 3, 4, 10])
    assert percentile_cont(values, 0.5) == 3
    assert percentile_cont(values, 0.95) == pytest.approx(4 + 0.8 * 6)
    assert percentile_cont(SortedInts([7]), 0.99) == 7


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


# --- values without a finite meaning (issue 12 §2) ---------------------------------------------

BIGINT_MAX = 2**63 - 1


def unconstrain(conn: psycopg.Connection[Any]) -> None:
    """The log table as a careless migration or a hand-made copy could leave it, to reach values
    the real schema forbids: text labels without NOT NULL, created_at nullable, no CHECK on
    duration_ms. (Infinite timestamps, NULL customers and durations, extreme integers and odd
    text are all allowed by the real schema.)"""
    conn.execute("DROP INDEX customer_sync_logs_operation_type_ce6108e7_like,"
                 " customer_sync_logs_status_4ff9bb33_like")
    conn.execute("ALTER TABLE common_customersynclog ALTER operation_type TYPE text,"
                 " ALTER status TYPE text, ALTER operation_type DROP NOT NULL,"
                 " ALTER status DROP NOT NULL, ALTER created_at DROP NOT NULL,"
                 " DROP CONSTRAINT customer_sync_logs_duration_ms_check")


def insert_raw(conn: psycopg.Connection[Any], op: str | None, status: str | None,
               created_at: Any, duration: int | None = None, customer: int | None = None,
               details: str = "{}", row_id: int | None = None) -> None:
    """One row with values taken as PostgreSQL takes them (created_at may be 'infinity')."""
    conn.execute(
        "INSERT INTO common_customersynclog (id, onec_id, operation_type, status, error_message,"
        " details, created_at, session, correlation_id, customer_id, duration_ms, updated_at,"
        " user_agent) VALUES (coalesce(%s, nextval(pg_get_serial_sequence("
        "'common_customersynclog', 'id'))), '', %s, %s, '', %s::jsonb, %s::timestamptz, '',"
        " gen_random_uuid(), %s, %s, now(), '')",
        (row_id, op, status, details, created_at, customer, duration),
    )


def poison_rows(biggest_customer: int) -> list[tuple[Any, ...]]:
    """(op, status, created_at, duration, customer, details): every value the collector converts
    at its edges, mixed with ordinary rows."""
    recent = ts(NOW - 30)
    long_text = "y" * 300
    return [
        ("created", "success", "infinity", None, None, "{}"),
        ("updated", "success", "-infinity", 5, biggest_customer, "{}"),
        ("error", "failed", None, 7, None, "{}"),
        ("updated", "success", "294276-12-31 23:59:59.999999+00", 9, None, "{}"),
        ("updated", "success", "4713-01-01 00:00:00+00 BC", None, None, "{}"),
        ("batch_operation", "success", recent, 2_147_483_647, None, "{}"),
        ("batch_operation", "success", recent, 0, None, "{}"),
        ("batch_operation", "warning", recent, -1, None, "{}"),
        ("batch_operation", "error", recent, -2_147_483_648, None, "{}"),
        ("updated", "success", recent, None, biggest_customer, "{}"),
        ("updated", "success", recent, None, None, "{}"),
        ("", "success", recent, 3, None, "{}"),
        ("x" * 500, "success", recent, 4, None, "{}"),
        ("\x01ctl", "success", recent, None, None, "{}"),
        ("tab\there", "error", recent, None, None, "{}"),
        ("line\nbreak", "success", recent, 11, None, "{}"),
        ("\x1b[31mred", "success", recent, None, None, "{}"),
        ("\u200bzero-width", "success", recent, None, None, "{}"),
        (None, "success", recent, 6, None, "{}"),
        ("created", None, recent, None, None, "{}"),
        ("created", "", recent, None, None, "{}"),
        ("created", "s" * 200, recent, None, None, "{}"),
        ("кириллица", 'quote"back\\slash', recent, 8, None, "{}"),
        ("other", "success", recent, None, None, "{}"),  # a real value named like the overflow
        ("conflict_resolution", "success", recent, 2, None, "null"),
        ("conflict_resolution", "success", recent, None, None, "[1, 2]"),
        ("conflict_resolution", "error", recent, None, None, '"just a string"'),
        ("conflict_resolution", "success", recent, None, None, '{"conflict_source": {"a": 1}}'),
        ("conflict_resolution", "success", "infinity", None, None, '{"conflict_source": 5}'),
        ("conflict_resolution", "success", recent, None, None, '{"conflict_source": ""}'),
        ("conflict_resolution", "success", recent, None, None,
         '{"conflict_source": "' + long_text + '"}'),
        ("conflict_resolution", "success", recent, None, None, '{"conflict_source": "a\\u0007b"}'),
        ("customer_identification", "success", recent, 1, None,
         '{"search_method": ["tax_id"], "found": "TRUE"}'),
        ("customer_identification", "skipped", recent, None, None,
         '{"search_method": "\\u001b[0m", "found": 1}'),
        ("identify_customer", "success", recent, None, None, '{"identification_method": "\\t"}'),
    ]


def unusable_truth(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Rows the collector can count but not use whole, by reason, from the table itself."""
    (out_of_range,) = conn.execute(
        "SELECT count(*) FROM common_customersynclog WHERE created_at IS NULL"
        f" OR NOT ({FITS})").fetchone()
    (negative,) = conn.execute("SELECT count(*) FROM common_customersynclog"
                               " WHERE duration_ms < 0").fetchone()
    labels = 0
    for op, status, *details in conn.execute(
        "SELECT operation_type, status,"
        " CASE WHEN operation_type = 'conflict_resolution' THEN details->>'conflict_source' END,"
        " CASE WHEN operation_type = 'customer_identification' THEN details->>'search_method' END,"
        " CASE WHEN operation_type = 'identify_customer' THEN details->>'identification_method'"
        " END FROM common_customersynclog"
    ):
        raw_ok = [exported(v) == v for v in (op, status)] + [
            not v or exported(v) == v for v in details]
        labels += not all(raw_ok)
    return {"created_at_out_of_range": out_of_range, "duration_negative": negative,
            "label_value_invalid": labels}


def assert_whole(found: Samples, conn: psycopg.Connection[Any], now: float,
                 buckets: list[float]) -> None:
    assert_matches_truth(found, truth(conn, now, buckets), buckets)
    unusable = {dict(k)["reason"]: v for k, v in
                pick(found, "customer_sync_exporter_log_rows_unusable_total").items()}
    assert unusable == unusable_truth(conn)
    (count,) = conn.execute("SELECT count(*) FROM common_customersynclog").fetchone()
    assert found[("customer_sync_exporter_log_rows_read_total", ())] == count


def test_poison_values_are_counted_and_never_stop_the_collector(conn, make_collector) -> None:
    from tests.exposition import promtool_problems

    unconstrain(conn)
    (biggest,) = insert_users(conn, 1)
    conn.execute("UPDATE users SET id = %s WHERE id = %s", (BIGINT_MAX, biggest))
    clock, monotonic = Clock(), Clock(0.0)
    rows = poison_rows(BIGINT_MAX)
    for row in rows:  # read by the start-up pass
        insert_raw(conn, *row)
    collector = make_collector(clock, monotonic)
    buckets = list(collector.buckets)
    found = scrape(collector)  # raises unless the collector succeeded
    assert_whole(found, conn, clock.now, buckets)
    assert found[("customer_sync_exporter_log_rows_unusable_total",
                  (("reason", "created_at_out_of_range"),))] == 5
    for row in rows:  # read by the tail
        insert_raw(conn, *row)
    clock.now += 60
    assert_whole(scrape(collector), conn, clock.now, buckets)
    # The largest id there is: the gap below it is one range (it was 2**63 single ids), and the
    # rows the sequence hands out next land in that gap and are read from there.
    insert_raw(conn, "created", "success", ts(NOW), row_id=BIGINT_MAX)
    assert scrape(collector)[("customer_sync_exporter_log_last_id", ())] == BIGINT_MAX
    insert_raw(conn, "updated", "success", ts(NOW))
    found = scrape(collector)
    assert_whole(found, conn, clock.now, buckets)
    (below,) = conn.execute("SELECT max(id) FROM common_customersynclog WHERE id < %s",
                            (BIGINT_MAX,)).fetchone()
    assert found[("customer_sync_exporter_log_pending_gap_ranges", ())] == 1
    assert found[("customer_sync_exporter_log_pending_gaps", ())] == BIGINT_MAX - 1 - below
    # Long after any transaction could hold those ids: the ids the sequence has not handed out
    # yet are still waited for, so its next rows are not missed.
    monotonic.now += 5
    for _ in range(3):  # a horizon is noted, then passed (nothing else runs)
        found = scrape(collector)
        time.sleep(0.1)
    assert found[("customer_sync_exporter_log_pending_gaps", ())] == BIGINT_MAX - 1 - below
    insert_raw(conn, "skipped", "success", ts(NOW))
    assert_whole(scrape(collector), conn, clock.now, buckets)
    families = collector.collect(Deadline.after(5))
    assert not promtool_problems(families)
    exposed = {dict(k)["operation_type"] for k in pick(samples(families),
                                                         "customer_sync_operations_total")}
    assert {"кириллица", "other"} <= exposed and not {"", "\x01ctl", "x" * 500} & exposed


# --- big transactions (issue 12 §1) --------------------------------------------------------------

BULK = (
    "INSERT INTO common_customersynclog (onec_id, operation_type, status, error_message, details,"
    " created_at, session, correlation_id, customer_id, duration_ms, updated_at, user_agent)"
    " SELECT '', %(op)s, %(status)s, '', '{}', %(at)s, '7', gen_random_uuid(), NULL, NULL, now(),"
    " '' FROM generate_series(1, %(n)s)"
)


def bulk(conn: psycopg.Connection[Any], n: int, op: str, status: str = "success",
         batch: int = 2000) -> None:
    """``n`` rows the way a 1C import in one ``transaction.atomic()`` writes them: in batches,
    each taking its ids from the shared sequence as it goes."""
    for done in range(0, n, batch):
        conn.execute(BULK, {"op": op, "status": status, "at": ts(NOW - 5),
                            "n": min(batch, n - done)})


class SmallWriter:
    """Another writer committing a row or two every few milliseconds, so its ids land between
    the big transactions' ids (each of its commits splits their ids into one more range)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SmallWriter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as c:
            while not self._stop.wait(0.005):
                insert_rows(c, [LogRow("error", "failed", ts(NOW - 5))] * 2)


def totals_of(found: Samples) -> dict[tuple[str, str], float]:
    return {(dict(k)["operation_type"], dict(k)["status"]): v
            for k, v in pick(found, "customer_sync_operations_total").items() if v}


def table_totals(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], int]:
    return {(o, s): n for o, s, n in conn.execute(
        "SELECT operation_type, status, count(*) FROM common_customersynclog GROUP BY 1, 2")}


def assert_exact_when_quiet(conn: psycopg.Connection[Any], collector: SyncLogCollector,
                            monotonic: Clock) -> Samples:
    """No writer left: every counter equals the table, no gap is pending, no row was read twice."""
    monotonic.now += 2  # past the settle period: rolled-back ids may expire
    found = scrape_until(collector, lambda f: f[("customer_sync_exporter_log_pending_gaps", ())]
                         == 0)
    assert found[("customer_sync_exporter_log_pending_gaps", ())] == 0
    assert totals_of(found) == table_totals(conn)
    (count,) = conn.execute("SELECT count(*) FROM common_customersynclog").fetchone()
    assert found[("customer_sync_exporter_log_rows_read_total", ())] == count
    return found


def test_three_overlapping_large_transactions_one_rolled_back(db_dsn: str, conn,
                                                               make_collector) -> None:
    """240,000 ids in flight at once (the old tracker dropped every gap past 200,000), split by
    another writer's commits; one transaction rolls back, the committed ones are read over
    several short scrapes, each row once."""
    monotonic = Clock(0.0)
    collector = make_collector(Clock(), monotonic, batch_size=2000)
    scrape(collector)
    names = ("created", "updated", "skipped")
    big = [psycopg.connect(db_dsn) for _ in names]
    try:
        with SmallWriter(db_dsn):
            threads = [threading.Thread(target=bulk, args=(c, 80_000, op))
                       for c, op in zip(big, names, strict=True)]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                scrape(collector)  # the tail passes the open transactions' ids
                time.sleep(0.05)
            # The ids after the small writer's newest commit are not known to be missing until
            # its next commit lands above them (every 5 ms): scrape until it has.
            found = scrape_until(collector, lambda f: f[
                ("customer_sync_exporter_log_pending_gaps", ())] >= 240_000)
            assert found[("customer_sync_exporter_log_pending_gaps", ())] >= 240_000
            ranges = found[("customer_sync_exporter_log_pending_gap_ranges", ())]
            assert 3 <= ranges < 100_000
            big[0].commit()
            # A short deadline: what was read is served (reason timeout), the rest next time.
            partial: list[float] = []
            while True:
                try:
                    found = samples(collector.collect(Deadline.after(0.2)))
                    break
                except CollectorError as exc:
                    assert exc.reason is Reason.TIMEOUT, exc.message
                    partial.append(totals_of(samples(exc.partial)).get(("created", "success"), 0))
            assert partial, "80,000 committed rows were read in one short scrape"
            assert 0 < partial[0] < 80_000 and partial == sorted(partial), partial
            assert totals_of(found)[("created", "success")] == 80_000
            big[1].rollback()
            scrape(collector)
            big[2].commit()
            scrape(collector)
        found = assert_exact_when_quiet(conn, collector, monotonic)
        assert ("updated", "success") not in totals_of(found)
        assert found[("customer_sync_exporter_log_gaps_expired_total", ())] == 80_000
        assert found[("customer_sync_exporter_log_gap_limit_reached_total", ())] == 0
    finally:
        for c in big:
            c.close()


def test_transaction_older_than_the_last_100000_ids_at_startup(db_dsn: str, conn,
                                                                make_collector) -> None:
    """The start-up pass used to look for gaps among the last 100,000 ids only."""
    with psycopg.connect(db_dsn) as slow:
        insert_rows(slow, [LogRow("created", "success", ts(NOW - 5))])  # id 1, not committed
        conn.execute(BULK, {"op": "updated", "status": "success", "at": ts(NOW - 5),
                            "n": 120_000})
        collector = make_collector(Clock())
        assert scrape(collector)[("customer_sync_exporter_log_pending_gaps", ())] == 1
        slow.commit()
    assert totals_of(scrape(collector)) == {("created", "success"): 1,
                                            ("updated", "success"): 120_000}


def test_big_transaction_committed_while_postgres_restarts() -> None:
    """Committed, partly read, then the server dies: the cursor and the gaps survive, the rest
    is read after the restart, nothing twice."""
    from exporter.demo.postgres import EmbeddedPostgres
    from tests.conftest import server_dir

    server = EmbeddedPostgres(server_dir("bigtx")).start()
    db = None
    try:
        dsn = server.create_database()
        db = Database(DatabaseConfig(dsn=dsn))  # type: ignore[arg-type]
        monotonic = Clock(0.0)
        # The smallest batches: 500 round trips to read the 50,000 rows, so the 0.15 s below
        # cuts the read short however fast the rows are consumed.
        collector = synclog_collector(db, SyncLogConfig(batch_size=100), clock=Clock(),
                                      monotonic=monotonic)
        scrape(collector)
        with psycopg.connect(dsn) as big, psycopg.connect(dsn, autocommit=True) as other:
            for _ in range(10):  # interleaved with another writer's commits
                bulk(big, 5000, "created")
                insert_rows(other, [LogRow("error", "failed", ts(NOW - 5))])
            assert scrape(collector)[("customer_sync_exporter_log_pending_gaps", ())] == 50_000
            big.commit()
        with pytest.raises(CollectorError) as cut:
            collector.collect(Deadline.after(0.15))  # reading, and then the server goes
        assert cut.value.reason is Reason.TIMEOUT
        read_before = totals_of(samples(cut.value.partial)).get(("created", "success"), 0)
        assert 0 < read_before < 50_000
        server.kill()
        with pytest.raises(CollectorError) as failed:
            collector.collect(Deadline.after(3))
        assert failed.value.reason is Reason.CONNECT
        server.start()
        scrape_reconnected(collector, 10)
        with psycopg.connect(dsn, autocommit=True) as c:
            assert_exact_when_quiet(c, collector, monotonic)
    finally:
        if db is not None:
            db.close()
        server.stop()


def test_gap_limit_stops_short_says_so_and_recovers(db_dsn: str, conn, make_collector) -> None:
    """With room for three ranges and five open transactions between committed rows, the tail
    stops before the fourth gap instead of forgetting it: a failure with its reason (also on the
    landing page), a counter, one warning; once they commit, every row is there."""
    from structlog.testing import capture_logs

    from exporter.http import ExporterApp
    from exporter.scrape import Scraper

    collector = make_collector(Clock(), max_gap_ranges=3)
    scrape(collector)
    open_tx = [psycopg.connect(db_dsn) for _ in range(5)]
    try:
        for tx in open_tx:  # open, committed, open, committed, ...
            insert_rows(tx, [LogRow("created", "success", ts(NOW - 5))])
            insert_rows(conn, [LogRow("updated", "success", ts(NOW - 5))])
        with capture_logs() as logs:
            for _ in range(2):
                with pytest.raises(CollectorError) as stopped:
                    collector.collect(Deadline.after(5))
        assert stopped.value.reason is Reason.TIMEOUT
        assert "gap limit reached" in stopped.value.message
        partial = samples(stopped.value.partial)
        assert totals_of(partial) == {("updated", "success"): 3}  # the rows before the 4th gap
        assert partial[("customer_sync_exporter_log_gap_limit_reached_total", ())] == 2
        assert partial[("customer_sync_exporter_log_pending_gap_ranges", ())] == 3
        warnings = [e for e in logs if e["event"] == "sync-log gap limit reached"]
        assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
        scraper = Scraper([collector], 5.0, process_collector=False)
        scraper.scrape(Deadline.after(5))
        page = b"".join(ExporterApp(scraper)({"PATH_INFO": "/"}, lambda *_: None)).decode()
        assert "timeout: common_customersynclog: gap limit reached" in page
        for tx in open_tx:
            tx.commit()
        with capture_logs() as logs:
            found = scrape(collector)
        assert totals_of(found) == table_totals(conn) == {("created", "success"): 5,
                                                          ("updated", "success"): 5}
        assert [e["event"] for e in logs] == ["sync-log gap limit cleared"]
        assert found[("customer_sync_exporter_log_pending_gaps", ())] == 0
    finally:
        for tx in open_tx:
            tx.close()


def test_gap_limit_at_startup_stops_the_pass_short(db_dsn: str, conn, make_collector) -> None:
    """More holes below max(id) than ranges allowed: the start-up pass counts only the rows
    below the first hole that does not fit, and the tail reads the rest as the holes expire."""
    for _ in range(5):  # committed, rolled back, committed, ...
        insert_rows(conn, [LogRow("updated", "success", ts(NOW - 5))])
        with psycopg.connect(db_dsn) as aborted:
            insert_rows(aborted, [LogRow("created", "success", ts(NOW - 5))])
            aborted.rollback()
    insert_rows(conn, [LogRow("updated", "success", ts(NOW - 5))])
    monotonic = Clock(0.0)
    collector = make_collector(Clock(), monotonic, max_gap_ranges=2)
    with pytest.raises(CollectorError) as stopped:
        scrape(collector)
    assert "gap limit reached" in stopped.value.message
    partial = samples(stopped.value.partial)
    assert totals_of(partial) == {("updated", "success"): 3}  # ids 1, 3, 5; id 6 did not fit
    assert partial[("customer_sync_exporter_log_gap_limit_reached_total", ())] >= 1
    end = time.monotonic() + 10
    while True:
        monotonic.now += 2  # the holes settle and expire (no transaction holds them): room again
        try:
            found = samples(collector.collect(Deadline.after(5)))
            break
        except CollectorError as exc:
            assert "gap limit reached" in exc.message and time.monotonic() < end
    assert totals_of(found) == table_totals(conn) == {("updated", "success"): 6}
    found = assert_exact_when_quiet(conn, collector, monotonic)
    assert found[("customer_sync_exporter_log_gaps_expired_total", ())] == 5


def test_bucket_bounds_beyond_an_integer_of_milliseconds(conn, make_collector) -> None:
    """A histogram bound of 30 days is 2.6e9 ms, more than duration_ms's integer holds."""
    insert_rows(conn, [LogRow("batch_operation", "success", ts(NOW - 10), d)
                       for d in (5, 2_147_483_647)])
    found = scrape(make_collector(Clock(), buckets=[0.01, 2_592_000.0]))
    buckets = pick(found, "customer_sync_operation_duration_seconds_bucket",
                   operation_type="batch_operation")
    assert buckets == {(("le", "0.01"),): 1, (("le", "2.592e+06"),): 2, (("le", "+Inf"),): 2}
