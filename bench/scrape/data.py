"""The FREESPORT tables the bench measures on: loaded once, seeded, and kept current."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.scrape.common import ROLE_PASSWORD, SPOT, log
from exporter.demo.ports import free_port
from exporter.demo.postgres import EmbeddedPostgres

USERS = 50_000
STALE_AFTER_S = 120.0
RECENT = "25 hours"  # longer than the longest window (24h): the rows whose time matters
SEED = 0.16  # setseed() before loading, so every load draws the same rows

LOG_INSERT = """
INSERT INTO common_customersynclog (onec_id, operation_type, status, error_message, details,
    created_at, session, correlation_id, customer_id, duration_ms, updated_at, user_agent)
SELECT '', k.op, k.st, CASE WHEN k.st IN ('failed', 'error') THEN 'boom' ELSE '' END, k.details,
       s.ts, CASE WHEN k.logger THEN '' ELSE (s.g / 4735)::text END, gen_random_uuid(),
       CASE WHEN k.has_customer THEN 1 + (s.g * 7919) % {users} END,
       CASE WHEN k.logger THEN (exp(random() * 9))::int END, s.ts, ''
FROM (SELECT g, {end_ts} - ({span_s} * ({n} - g)::float8 / {n}) * interval '1 second' AS ts,
             random() AS r, random() AS r2
      FROM generate_series({lo}::int8, {hi}) g) s,
LATERAL (SELECT
    CASE WHEN s.r < 0.30 THEN 'updated' WHEN s.r < 0.45 THEN 'created'
         WHEN s.r < 0.55 THEN 'skipped'
         WHEN s.r < 0.60 THEN 'error' WHEN s.r < 0.70 THEN 'customer_identification'
         WHEN s.r < 0.76 THEN 'conflict_resolution' WHEN s.r < 0.82 THEN 'import_from_1c'
         WHEN s.r < 0.88 THEN 'batch_operation' WHEN s.r < 0.94 THEN 'sync_changes'
         ELSE 'data_validation' END AS op,
    s.r >= 0.60 AS logger,
    s.r < 0.45 OR (s.r >= 0.60 AND s.r < 0.82) AS has_customer,
    CASE WHEN s.r < 0.55 THEN 'success' WHEN s.r < 0.60 THEN 'failed'
         WHEN s.r2 < 0.9 THEN 'success' WHEN s.r < 0.70 THEN 'skipped' ELSE 'error' END AS st,
    CASE WHEN s.r >= 0.60 AND s.r < 0.70 THEN jsonb_build_object(
             'search_method', (ARRAY['onec_id','onec_guid','tax_id','email'])[1 + (s.g % 4)],
             'found', s.r2 < 0.9)
         WHEN s.r >= 0.70 AND s.r < 0.76 THEN jsonb_build_object(
             'conflict_source', (ARRAY['portal_registration','data_import'])[1 + (s.g % 2)],
             'email_sent', s.r2 < 0.5, 'resolution_strategy', 'onec_wins')
         WHEN s.r < 0.45 THEN jsonb_build_object('role', 'unregistered', 'role_outcome',
             'roles_skipped_unlinked_record', 'role_preserved', true)
         WHEN s.r < 0.55 THEN '{{"reason": "not_buyer", "role": "Поставщик"}}'::jsonb
         ELSE '{{}}'::jsonb END AS details) k
"""

USERS_INSERT = """
INSERT INTO users (password, is_superuser, first_name, last_name, is_staff, is_active, date_joined,
    email, role, phone, company_name, tax_id, is_verified, created_at, updated_at, created_in_1c,
    needs_1c_export, sync_error_message, sync_status, verification_status, country,
    onec_price_type_id, responsible_manager_manual)
SELECT CASE WHEN g % 10 = 0 THEN 'x' ELSE '' END, false, '', '', false, g % 50 <> 0,
       now(), NULL, CASE WHEN g % 10 = 0 THEN 'retail' ELSE 'unregistered' END, '', '', '',
       false, now() - (g % 1000) * interval '1 hour', now(), g % 10 <> 0, g % 97 = 0, '',
       'synced', 'unverified', 'Россия', '', false
FROM generate_series(1, {users}) g
"""

CONFLICTS_INSERT = """
INSERT INTO common_syncconflict (conflict_type, resolution_strategy, is_resolved, resolved_at,
    created_at, customer_id, details, updated_at)
SELECT CASE WHEN g % 2 = 0 THEN 'portal_registration_blocked' ELSE 'customer_data' END,
       'onec_wins', true, now(), now() - g * interval '1 second', 1 + g % {users},
       '{{"resolved_by": "CustomerConflictResolver"}}', now()
FROM generate_series(1, {n}) g
"""



def load(dsn: str, rows: int, days: float, conflicts: int) -> None:
    """Load ``rows`` log rows evenly over ``days`` ending now, unless that is already there."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Rows a previous run added while measuring are removed, so every run starts equal, and
        # the ids go on from the last loaded one: a hole in the ids looks like transactions in
        # flight to the exporter, which would watch it while it is being measured.
        deleted = conn.execute("DELETE FROM common_customersynclog WHERE id > %s", (rows,))
        if deleted.rowcount:
            conn.execute("VACUUM ANALYZE common_customersynclog")
        conn.execute("SELECT setval(pg_get_serial_sequence('common_customersynclog', 'id'),"
                     " greatest(1, (SELECT max(id) FROM common_customersynclog)))")
        # What was loaded is written on the table once loading completed.
        loaded = f"scrape_bench rows={rows} days={days:g} conflicts={conflicts} users={USERS}"
        (comment,) = conn.execute(
            "SELECT obj_description('common_customersynclog'::regclass, 'pg_class')"
        ).fetchone()  # type: ignore[misc]
        (have,) = conn.execute(
            "SELECT count(*) FROM common_customersynclog").fetchone()  # type: ignore[misc]
        if comment == loaded and have == rows:
            log(f"  {rows:,} rows over {days:g} days already loaded")
        else:
            conn.execute("TRUNCATE common_customersynclog, common_syncconflict, users"
                         " RESTART IDENTITY CASCADE")
            conn.execute("SELECT setseed(%s)", (SEED,))
            conn.execute(USERS_INSERT.format(users=USERS))
            step = 1_000_000
            started = time.monotonic()
            for lo in range(1, rows + 1, step):
                hi = min(rows, lo + step - 1)
                conn.execute(LOG_INSERT.format(
                    users=USERS, end_ts="now()", span_s=days * 86400.0, lo=lo, hi=hi, n=rows))
                log(f"  loaded {hi:,} rows ({time.monotonic() - started:.0f}s)")
            conn.execute(CONFLICTS_INSERT.format(users=USERS, n=conflicts))
            conn.execute("VACUUM ANALYZE")
            conn.execute(sql.SQL("COMMENT ON TABLE common_customersynclog IS {}").format(
                sql.Literal(loaded)))
        catch_up_clock(conn)


def catch_up_clock(conn: psycopg.Connection[Any]) -> None:
    """Move the rows of the last RECENT forward by the data's age: the windows see the load.

    Only those rows: shifting all 10M rewrote the table and its ten indexes (12 minutes, twice
    as long as loading); older rows are outside every window, only their hole shows in a plot.
    """
    (age,) = conn.execute(
        "SELECT extract(epoch FROM now() - max(created_at)) FROM common_customersynclog"
    ).fetchone()  # type: ignore[misc]
    if float(age) <= STALE_AFTER_S:
        return
    started = time.monotonic()
    gap = f"{float(age):.6f} seconds"
    moved = conn.execute(
        "UPDATE common_customersynclog SET created_at = created_at + %(gap)s::interval,"
        " updated_at = updated_at + %(gap)s::interval WHERE created_at >"
        " (SELECT max(created_at) FROM common_customersynclog) - %(recent)s::interval",
        {"gap": gap, "recent": RECENT}).rowcount
    conn.execute("UPDATE users SET created_at = created_at + %s::interval", (gap,))
    conn.execute("VACUUM ANALYZE common_customersynclog, users")
    log(f"  moved the {moved:,} rows of the last {RECENT} {float(age) / 60:,.1f} min forward "
        f"({time.monotonic() - started:.0f}s)")


def new_rows(conn: psycopg.Connection[Any], n: int) -> None:
    if n:
        conn.execute(LOG_INSERT.format(
            users=USERS, end_ts="now()", span_s=0, lo=1, hi=n, n=n))


def ensure_roles(admin: psycopg.Connection[Any], roles: Sequence[str]) -> None:
    """One login role per side, so pg_stat_statements tells their statements apart."""
    for role in roles:
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{ROLE_PASSWORD}'"
                          " IN ROLE pg_read_all_stats")
        admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")


def role_url(port: int, role: str, database: str, scheme: str = "postgresql") -> str:
    """Where ``role`` (made by :func:`ensure_roles`) connects to ``database`` on ``port``."""
    return f"{scheme}://{role}:{ROLE_PASSWORD}@127.0.0.1:{port}/{database}"


@contextmanager
def bench_database(data_dir: Path, rows: int, days: float,
                   conflicts: int) -> Iterator[tuple[str, str]]:
    """An embedded PostgreSQL in ``data_dir/pg`` with ``rows`` loaded (once: kept there) and the
    exporter's role, stopped on leaving: the owner's DSN and the exporter's URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pg = EmbeddedPostgres(data_dir / "pg", port=free_port()).start()
    try:
        name = f"bench_{rows}"
        dsn = pg.create_database(name)
        load(dsn, rows, days, conflicts)
        with psycopg.connect(dsn, autocommit=True) as admin:
            ensure_roles(admin, ("exporter",))
        yield dsn, role_url(pg.port, "exporter", name)
    finally:
        pg.stop()


def spot_truth(admin: psycopg.Connection[Any]) -> int:
    (n,) = admin.execute(
        "SELECT count(*) FROM common_customersynclog WHERE operation_type = %s AND status = %s",
        SPOT).fetchone()  # type: ignore[misc]
    return int(n)
