"""The README's GRANT statements are what the database collectors need: all of them, nothing more.

The ``exporter_dsn`` fixture runs exactly the README's statements on a database where PUBLIC's
default rights are revoked. With them the sync-log, business and PostgreSQL collectors succeed and
see every role's connection state; without any one of them something visibly fails; and the role
holds no other right.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from prometheus_client.core import Metric
from pydantic import SecretStr

from collectors.business import BusinessCollector
from collectors.postgres import PostgresCollector
from collectors.synclog import SyncLogCollector
from collectors.synclog_source import SyncLogSource
from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import BusinessConfig, DatabaseConfig, PostgresConfig, SyncLogConfig
from exporter.db import Database
from tests.exposition import samples
from tests.pg_majors import EXPORTER_ROLE, grant_statements

pytestmark = pytest.mark.every_pg_major

GRANTS = grant_statements("freesport")
TABLES = {"common_customersynclog", "users", "common_syncconflict", "import_sessions"}
SEQUENCE = "common_customersynclog_id_seq"
# Without each grant (by kind()): the collectors that fail, and what their error says. Without
# USAGE on the schema its tables are not found at all; without the sequence, nothing fails (only
# ids above it cannot be told from rolled-back ones, see test_synclog).
WITHOUT = {
    "CONNECT": ({"synclog", "business", "postgres"}, "permission denied for database"),
    "USAGE": ({"synclog", "business"}, "does not exist"),
    "SELECT": ({"synclog", "business"}, "permission denied for table"),
    "SEQUENCE": (set(), ""),
    "pg_read_all_stats": (set(), ""),
}


def kind(grant: str) -> str:
    """What a README GRANT gives: its privilege, or SEQUENCE for the id sequence's SELECT."""
    return "SEQUENCE" if " ON SEQUENCE " in grant else grant.split()[1]


def collect_all(dsn: str) -> dict[str, list[Metric] | CollectorError]:
    """One collection by each database collector (the start-up pass waited out)."""
    db = Database(DatabaseConfig(dsn=SecretStr(dsn), connect_timeout=2))
    source = SyncLogSource(db, SyncLogConfig())
    collectors = [SyncLogCollector(SyncLogConfig(), source=source),
                  BusinessCollector(db, BusinessConfig(), source=source),
                  PostgresCollector(db, PostgresConfig())]
    out: dict[str, list[Metric] | CollectorError] = {}
    try:
        for collector in collectors:
            end = time.monotonic() + 10
            while True:
                try:
                    out[collector.name] = collector.collect(Deadline.after(5))
                    break
                except CollectorError as exc:
                    starting = exc.reason is Reason.TIMEOUT and "start-up" in exc.message
                    if not starting or time.monotonic() > end:
                        out[collector.name] = exc
                        break
                    time.sleep(0.1)
    finally:
        db.close()
    return out


def unknown_states(families: list[Metric] | CollectorError) -> float:
    assert not isinstance(families, CollectorError), families
    return samples(families, "customer_sync_postgres_connections")[("unknown",)]


def test_with_the_readme_grants_every_collector_succeeds(db_dsn: str, exporter_dsn: str) -> None:
    with psycopg.connect(db_dsn, application_name="another-role"):  # the superuser, idle
        results = collect_all(exporter_dsn)
    failed = {name: r for name, r in results.items() if isinstance(r, CollectorError)}
    assert not failed
    assert unknown_states(results["postgres"]) == 0


@pytest.mark.parametrize("grant", GRANTS, ids=[kind(g) for g in GRANTS])
def test_without_any_one_grant_something_fails(db_dsn: str, exporter_dsn: str,
                                               conn: psycopg.Connection[Any], grant: str) -> None:
    name = exporter_dsn.rsplit("/", 1)[1]
    grant = grant.replace('ON DATABASE "freesport"', f'ON DATABASE "{name}"')
    conn.execute(grant.replace("GRANT ", "REVOKE ", 1).replace(" TO ", " FROM "))
    try:
        with psycopg.connect(db_dsn, application_name="another-role"):
            results = collect_all(exporter_dsn)
    finally:
        conn.execute(grant)  # role memberships are cluster-wide: give it back
    failed = {n: r.message for n, r in results.items() if isinstance(r, CollectorError)}
    collectors, says = WITHOUT[kind(grant)]
    assert set(failed) == collectors, failed
    assert all(says in message for message in failed.values()), failed
    if kind(grant) == "pg_read_all_stats":  # all works, but another role's session has no state
        assert unknown_states(results["postgres"]) >= 1


def test_the_role_holds_nothing_else(exporter_dsn: str, conn: psycopg.Connection[Any]) -> None:
    attributes = conn.execute(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin"
        " FROM pg_roles WHERE rolname = %s", (EXPORTER_ROLE,)).fetchone()
    assert attributes == (False, False, False, False, False, True)
    member_of = conn.execute(
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
        " WHERE m.member = %s::regrole", (EXPORTER_ROLE,)).fetchall()
    assert member_of == [("pg_read_all_stats",)]
    on_relations = conn.execute(
        "SELECT c.relname, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a"
        " WHERE a.grantee = %s::regrole", (EXPORTER_ROLE,)).fetchall()
    assert sorted(on_relations) == sorted((t, "SELECT") for t in TABLES | {SEQUENCE})
