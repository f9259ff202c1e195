"""Writing operations (``exporter/demo/traffic/writer.py``): rows filled the way Django fills
them, column lists that match the schema, and updates folded into their inserts without changing
what lands in the table."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from exporter.demo import traffic
from exporter.demo.traffic import STAMP, Op, write_ops
from tests.exporter.demo.traffic.conftest import Written, one, q


def test_rows_are_filled_as_django_fills_them(written: Written) -> None:
    dsn, before, after = written
    row = q(dsn, """
        SELECT count(*) FILTER (WHERE updated_at <> created_at),
               count(*) FILTER (WHERE user_agent <> ''),
               count(*) FILTER (WHERE ip_address IS NOT NULL),
               count(*) FILTER (WHERE created_at < %s OR created_at > %s),
               count(*) FILTER (WHERE jsonb_typeof(details) <> 'object'),
               count(*) FILTER (WHERE error_message <> '' AND status = 'success'),
               count(*) FILTER (WHERE error_message = '' AND status IN ('failed', 'error')),
               count(*) FILTER (WHERE duration_ms < 0)
        FROM common_customersynclog""", (before, after))[0]
    assert row == (0, 0, 0, 0, 0, 0, 0, 0)
    # The customer FK is deferred, so check it is really satisfied (Django would enforce it).
    assert one(dsn, "SELECT count(*) FROM common_customersynclog l LEFT JOIN users u"
                    " ON u.id = l.customer_id WHERE l.customer_id IS NOT NULL AND u.id IS NULL") == 0
    users = q(dsn, """
        SELECT count(*) FILTER (WHERE date_joined <> created_at OR updated_at < created_at),
               count(*) FILTER (WHERE created_at < %s OR created_at > %s),
               count(*) FILTER (WHERE is_superuser OR is_staff OR responsible_manager_manual),
               count(*) FILTER (WHERE sync_status NOT IN ('pending', 'synced', 'error',
                                                         'conflict')),
               count(*) FILTER (WHERE verification_status NOT IN ('unverified', 'verified',
                                                                 'pending'))
        FROM users""", (before, after))[0]
    assert users == (0, 0, 0, 0, 0)


TABLES = (traffic.LogRow, traffic.UserRow, traffic.SessionRow, traffic.ConflictRow)


def test_each_row_type_names_every_column_of_its_table(db_dsn: str) -> None:
    """The COPY column lists are the tables' columns (less the identity ``id`` where the database
    assigns it), so a schema change cannot slip past the writer."""
    for row_type in TABLES:
        columns = {c for (c,) in q(db_dsn, "SELECT column_name FROM information_schema.columns"
                                           " WHERE table_name = %s", (row_type.TABLE,))}
        assigned = {"id"} if row_type in (traffic.LogRow, traffic.ConflictRow) else set()
        assert set(row_type.COLUMNS) == columns - assigned, row_type.TABLE
        assert len(row_type.COLUMNS) == len(set(row_type.COLUMNS))


T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
USER_CHANGES = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(["retail", "wholesale_level2", "unregistered"]),
    "needs_1c_export": st.booleans(),
    "sync_status": st.sampled_from(["pending", "synced", "error"]),
    "verification_status": st.sampled_from(["unverified", "verified"]),
    "is_verified": st.booleans(),
    "password": st.sampled_from(["", "pbkdf2_sha256$x"]),
    "last_sync_at": st.just(STAMP),
    "last_sync_from_1c": st.just(STAMP),
})
SESSION_CHANGES = st.builds(
    lambda status, finished, report, error: (status, finished, report, error),
    st.sampled_from(["in_progress", "completed", "failed"]), st.booleans(),
    st.none() | st.fixed_dictionaries({"total": st.integers(0, 9)}),
    st.none() | st.sampled_from(["", "1C is down"]),
)
_ids = itertools.count(1_000_000)


def _table(dsn: str, table: str, uid: int) -> dict[str, Any]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        row = conn.execute(f"SELECT * FROM {table} WHERE id = %s", (uid,)).fetchone()
    assert row is not None
    return {k: v for k, v in row.items() if k != "id"}


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(USER_CHANGES, max_size=4), st.lists(SESSION_CHANGES, max_size=3))
def test_updates_folded_into_their_insert_write_what_insert_then_update_writes(
    db_dsn: str, user_changes: list[dict[str, Any]],
    session_changes: list[tuple[str, bool, dict[str, Any] | None, str | None]],
) -> None:
    """A batch folds the updates of rows it inserts; the result must equal an INSERT followed by
    the same UPDATEs in a later batch (the path rows written earlier take)."""
    folded, updated = next(_ids), next(_ids)

    def ops(uid: int) -> tuple[list[Op], list[Op]]:
        inserts: list[Op] = [
            traffic.UserRow(uid, f"u{uid}@mail.ru", "retail", False, password="x"),
            traffic.SessionRow(uid, celery_task_id="task"),
        ]
        changes: list[Op] = [traffic.UserUpdate(uid, c) for c in user_changes]
        changes += [traffic.SessionUpdate(uid, s, f, report_details=r, error_message=e)
                    for s, f, r, e in session_changes]
        return inserts, changes

    with psycopg.connect(db_dsn, autocommit=True) as conn:
        inserts, changes = ops(folded)
        times = [T0, T0] + [T0 + timedelta(seconds=i + 1) for i in range(len(changes))]
        write_ops(conn, inserts + changes, times)
        inserts, changes = ops(updated)
        write_ops(conn, inserts, times[:2])
        write_ops(conn, changes, times[2:])
    for table in ("users", "import_sessions"):
        one_pass, two_passes = _table(db_dsn, table, folded), _table(db_dsn, table, updated)
        for key in ("email",):  # the only column that differs by construction (unique)
            one_pass.pop(key, None)
            two_passes.pop(key, None)
        assert one_pass == two_passes, table
