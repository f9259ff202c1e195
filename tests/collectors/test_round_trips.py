"""Database statements per quiet scrape of the synclog + business + postgres collectors (issue 16).

Counted the way the bench counts them, by ``pg_stat_statements`` on a real server: every call of
the exporter's role in the test's database, the deadline's ``set_config``/``SET`` included. The
three collectors run as in the daemon, concurrently under one :class:`Scraper`, on the database
clock (the default time source), and what they serve is checked against SQL so the count cannot
drop by reading less.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from collectors.business import BusinessCollector
from collectors.postgres import PostgresCollector
from collectors.synclog import SyncLogCollector
from collectors.synclog_source import SyncLogSource
from exporter.collector import Deadline, Reason
from exporter.config import BusinessConfig, DatabaseConfig, PostgresConfig, SyncLogConfig
from exporter.db import Database
from exporter.scrape import Scraper
from tests.pg_majors import EXPORTER_ROLE
from tests.synclog_rows import LogRow, insert_rows, insert_users, pick, samples

pytestmark = pytest.mark.every_pg_major

QUIET_SCRAPES = 20
MAX_STATEMENTS_PER_QUIET_SCRAPE = 2


@pytest.fixture
def scraper(exporter_dsn: str) -> Iterator[Scraper]:
    db = Database(DatabaseConfig(dsn=SecretStr(exporter_dsn)))
    config = SyncLogConfig()
    source = SyncLogSource(db, config)
    collectors = [
        SyncLogCollector(config, source=source),
        BusinessCollector(db, BusinessConfig(), source=source),
        PostgresCollector(db, PostgresConfig()),
    ]
    scraper = Scraper(collectors, 10.0, process_collector=False)
    yield scraper
    scraper.close()
    source.close()
    db.close()


def exporter_calls(conn: psycopg.Connection[Any]) -> int:
    """Statements the exporter's role has run in this database, as pg_stat_statements counts."""
    (calls,) = conn.execute(
        "SELECT coalesce(sum(s.calls), 0)::int8 FROM pg_stat_statements s"
        " JOIN pg_roles r ON r.oid = s.userid"
        " WHERE r.rolname = %s"
        "   AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (EXPORTER_ROLE,),
    ).fetchone()  # type: ignore[misc]
    return int(calls)


def scrape_ok(scraper: Scraper) -> dict[Any, float]:
    families = scraper.scrape(Deadline.after(10.0))
    failed = {n: (r.reason, r.message) for n, r in scraper.last_results().items()
              if r is not None and not r.ok}
    assert not failed, failed
    return samples(families)


def write_some_of_everything(conn: psycopg.Connection[Any]) -> None:
    insert_users(conn, 3, needs_export=True)
    insert_users(conn, 2, created_in_1c=True)
    now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    insert_rows(conn, [
        LogRow("updated", "success", now, 120, 1),
        LogRow("created", "error", now, None, 2),
        LogRow("conflict_resolution", "success", now, 30, 3,
               {"conflict_source": "data_import", "email_sent": True}),
    ])
    conn.execute("INSERT INTO import_sessions (import_type, status, started_at, finished_at,"
                 " report_details, error_message, created_at, report, updated_at)"
                 " VALUES ('customers', 'completed', now(), now(), '{}', '', now(), '', now())")
    conn.execute("SELECT pg_stat_force_next_flush()")


def test_a_quiet_scrape_costs_at_most_two_statements(conn, scraper: Scraper) -> None:
    write_some_of_everything(conn)
    for _ in range(3):  # warm: the start-up pass, every pooled connection's first deadline
        scrape_ok(scraper)
    before = exporter_calls(conn)
    for _ in range(QUIET_SCRAPES):
        found = scrape_ok(scraper)
    statements = exporter_calls(conn) - before
    per_scrape = statements / QUIET_SCRAPES
    print(f"{per_scrape:.2f} statements per quiet scrape ({statements} in {QUIET_SCRAPES})")

    # What the last scrape served is whole and exact, so fewer statements did not read less.
    (log_rows,) = conn.execute("SELECT count(*) FROM common_customersynclog").fetchone()  # type: ignore[misc]
    (users,) = conn.execute("SELECT count(*) FROM users").fetchone()  # type: ignore[misc]
    (waiting,) = conn.execute(
        "SELECT count(*) FROM users WHERE needs_1c_export AND is_active").fetchone()  # type: ignore[misc]
    (sessions,) = conn.execute("SELECT count(*) FROM import_sessions").fetchone()  # type: ignore[misc]
    assert sum(pick(found, "customer_sync_operations_total").values()) == log_rows == 3
    assert sum(pick(found, "customer_sync_customers").values()) == users == 5
    assert found[("customer_sync_export_queue_customers", ())] == waiting == 3
    assert sum(pick(found, "customer_sync_import_sessions").values()) == sessions == 1
    assert sum(pick(found, "customer_sync_conflicts_total").values()) == 1
    assert found[("customer_sync_postgres_up", ())] == 1
    assert found[("customer_sync_postgres_connections_usable", ())] > 0

    assert per_scrape <= MAX_STATEMENTS_PER_QUIET_SCRAPE, (
        f"{statements} statements in {QUIET_SCRAPES} quiet scrapes")


def pair(exporter_dsn: str) -> tuple[Scraper, Database, SyncLogSource]:
    db = Database(DatabaseConfig(dsn=SecretStr(exporter_dsn)))
    config = SyncLogConfig()
    source = SyncLogSource(db, config)
    collectors = [SyncLogCollector(config, source=source),
                  BusinessCollector(db, BusinessConfig(), source=source)]
    return Scraper(collectors, 10.0, process_collector=False), db, source


def test_a_table_business_cannot_read_fails_business_alone(conn, exporter_dsn: str) -> None:
    """business's read rides the log's poll; when it fails there, synclog is served whole and
    business fails with its own reason, and it rides again once it can read."""
    write_some_of_everything(conn)
    scraper, db, source = pair(exporter_dsn)
    try:
        scrape_ok(scraper)
        conn.execute(f"REVOKE SELECT ON users FROM {EXPORTER_ROLE}")
        insert_rows(conn, [LogRow("updated", "success",
                                  conn.execute("SELECT now()").fetchone()[0])])  # type: ignore[index]
        for _ in range(2):  # the ride fails, then business reads alone and fails again
            found = samples(scraper.scrape(Deadline.after(10.0)))
            results = scraper.last_results()
            assert results["synclog"] is not None and results["synclog"].ok
            assert results["business"] is not None
            assert (results["business"].reason, "permission denied" in
                    (results["business"].message or "")) == (Reason.QUERY, True)
            assert sum(pick(found, "customer_sync_operations_total").values()) == 4
        conn.execute(f"GRANT SELECT ON users TO {EXPORTER_ROLE}")
        scrape_ok(scraper)  # alone, then both went well: it rides again
        before = exporter_calls(conn)
        found = scrape_ok(scraper)
        assert exporter_calls(conn) - before == 1  # one poll for both collectors
        (users,) = conn.execute("SELECT count(*) FROM users").fetchone()  # type: ignore[misc]
        assert sum(pick(found, "customer_sync_customers").values()) == users == 5
    finally:
        scraper.close()
        source.close()
        db.close()


def test_a_locked_log_does_not_starve_the_tables(conn, db_dsn: str, exporter_dsn: str) -> None:
    """The log locked by a migration: the poll that carries business's read times out, so
    from the next scrape on business reads its tables first and serves them with its failure."""
    write_some_of_everything(conn)
    scraper, db, source = pair(exporter_dsn)
    try:
        scrape_ok(scraper)
        with psycopg.connect(db_dsn) as locker:
            locker.execute("LOCK TABLE common_customersynclog IN ACCESS EXCLUSIVE MODE")
            for _ in range(2):
                scraper.scrape(Deadline.after(1.5))
            found = samples(scraper.scrape(Deadline.after(1.5)))
            results = scraper.last_results()
            assert results["business"] is not None
            assert results["business"].reason is Reason.TIMEOUT
            assert found[("customer_sync_export_queue_customers", ())] == 3
        found = scrape_ok(scraper)
        assert found[("customer_sync_export_queue_customers", ())] == 3
    finally:
        scraper.close()
        source.close()
        db.close()
