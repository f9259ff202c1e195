"""The demo traffic simulator writes rows in the DATA.md §3 shapes, checked with independent SQL.

Everything runs against a real PostgreSQL holding the FREESPORT schema (``db_dsn``). The checks
are written from DATA.md, not from the simulator's code: key sets per writer, status sets per
operation, processor rows without durations and with one correlation id per row, logger rows
sharing one per instance, import-session totals equal to the rows of that session.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from exporter.demo.postgres import EmbeddedPostgres
from exporter.demo.traffic import (
    NO_OUTAGES,
    CountingIds,
    LogRow,
    Mix,
    OutageSchedule,
    SessionUpdate,
    TrafficModel,
    TrafficSimulator,
    bulk_load,
)

DECLARED_OPS = {
    "created", "updated", "skipped", "error", "import_from_1c", "export_to_1c",
    "customer_identification", "conflict_resolution", "sync_changes", "batch_operation",
    "data_validation", "notification_failed",
}
STATUSES = {  # DATA.md §2 table: statuses each writer writes
    "created": {"success", "warning"},
    "updated": {"success"},
    "skipped": {"success"},
    "error": {"failed"},
    "import_from_1c": {"success", "error"},
    "export_to_1c": {"success", "error"},
    "customer_identification": {"success", "skipped"},
    "conflict_resolution": {"success", "error"},
    "sync_changes": {"success", "error"},
    "batch_operation": {"success", "warning", "error"},
    "data_validation": {"success", "error"},
    "notification_failed": {"warning"},
    "identify_customer": {"success", "not_found"},
}
PROCESSOR_OPS = ("created", "updated", "skipped", "error")
LOGGER_OPS = (
    "import_from_1c", "export_to_1c", "customer_identification", "sync_changes",
    "batch_operation", "data_validation",
)
LOGGER_KEYS = {  # DATA.md §3.2 (success-only extras listed separately)
    "import_from_1c": {"source", "import_timestamp", "onec_customer_id", "customer_type",
                       "data_fields"},
    "export_to_1c": {"destination", "export_timestamp", "platform_customer_id", "customer_role",
                     "export_format", "exported_fields"},
    "customer_identification": {"search_method", "search_value", "normalized_value", "found",
                                "customer_id"},
    "sync_changes": {"changes", "timestamp", "customer_id"},
    "batch_operation": {"operation_name", "total_count", "success_count", "error_count",
                        "success_rate", "timestamp"},
    "data_validation": {"validation_timestamp", "customer_email", "is_valid", "errors",
                        "warnings", "validated_fields"},
}
SUCCESS_EXTRAS = {
    "import_from_1c": {"platform_customer_id", "assigned_role", "created_new"},
    "export_to_1c": {"assigned_1c_id", "response_data"},
}
LOGGER_CONFLICT_KEYS = {
    "conflict_source", "resolution_strategy", "conflicting_fields", "changes_made", "action",
    "email_sent", "sync_conflict_id",
}
RESOLVER_CONFLICT_KEYS = {"conflict_source", "resolution_strategy", "conflicting_fields"}
ROLE_OUTCOMES = {
    "roles_updated_from_unregistered", "roles_updated_from_assigned", "roles_already_actual",
    "roles_skipped_unlinked_record", "roles_skipped_no_data", "roles_skipped_no_agreement",
    "roles_skipped_unknown_price_type", "roles_skipped_ambiguous",
}
PORTAL_ROLES = {
    "retail", "wholesale_level1", "wholesale_level2", "wholesale_level3", "wholesale_level4",
    "trainer", "federation_rep",
}


def q(dsn: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def one(dsn: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    return q(dsn, query, params)[0][0]


@pytest.fixture(scope="module")
def written(pg: EmbeddedPostgres) -> Iterator[tuple[str, datetime, datetime]]:
    """3000 live rows, with a forced 1C outage in the middle, written once for the read-only
    shape tests; returns the DSN and the DB-time window of the writes."""
    name = f"t_traffic_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE freesport_template')
    dsn = pg.dsn(name)
    sim = TrafficSimulator(
        dsn, random.Random(7), schedule=NO_OUTAGES, mix=Mix(import_gap_seconds=0)
    )
    before = one(dsn, "SELECT now()")
    for _ in range(10):
        sim.step(200)
    sim.force_outage(True)
    sim.step(400)
    sim.force_outage(False)
    sim.step(600)
    sim.stop()
    after = one(dsn, "SELECT now()")
    yield dsn, before, after
    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_every_operation_type_and_status_in_declared_sets(
    written: tuple[str, datetime, datetime],
) -> None:
    dsn, _, _ = written
    pairs = q(dsn, "SELECT operation_type, status, count(*) FROM common_customersynclog"
                   " GROUP BY 1, 2")
    assert sum(n for _, _, n in pairs) == 3000
    ops = {op for op, _, _ in pairs}
    assert ops == DECLARED_OPS | {"identify_customer"}
    for op, status, _ in pairs:
        assert status in STATUSES[op], (op, status)
    seen = {(op, status) for op, status, _ in pairs}
    # Every status a writer can write shows up (pending is never written: DATA.md §2).
    for op, statuses in STATUSES.items():
        for status in statuses:
            if (op, status) != ("sync_changes", "error"):  # 3 % of a few dozen rows
                assert (op, status) in seen, (op, status)
    assert one(dsn, "SELECT count(*) FROM common_customersynclog WHERE status = 'pending'") == 0


def test_rows_are_filled_as_django_fills_them(written: tuple[str, datetime, datetime]) -> None:
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


def test_processor_rows(written: tuple[str, datetime, datetime]) -> None:
    dsn, _, _ = written
    n, with_duration, distinct_corr, bad_session, logger_session = q(dsn, """
        SELECT count(*), count(duration_ms), count(DISTINCT correlation_id),
               count(*) FILTER (WHERE NOT EXISTS (
                   SELECT 1 FROM import_sessions s
                   WHERE s.id::text = l.session AND s.import_type = 'customers')),
               count(*) FILTER (WHERE session = '')
        FROM common_customersynclog l
        WHERE operation_type IN ('created', 'updated', 'skipped', 'error')""")[0]
    assert n > 1000
    assert with_duration == 0  # NULL for every importer row
    assert distinct_corr == n  # a new uuid4 per row
    assert bad_session == 0 and logger_session == 0
    skipped = q(dsn, "SELECT details, customer_id FROM common_customersynclog"
                     " WHERE operation_type = 'skipped'")
    assert skipped
    for details, customer in skipped:
        assert set(details) == {"reason", "role"} and details["reason"] == "not_buyer"
        assert "покупатель" not in details["role"].casefold() and customer is None
    errors = q(dsn, "SELECT details, customer_id, error_message FROM common_customersynclog"
                    " WHERE operation_type = 'error'")
    assert errors and all(d == {} and c is None and m for d, c, m in errors)
    assert any(m.startswith("Невалидный формат email: ") for _, _, m in errors)
    created = q(dsn, """
        SELECT l.status, l.details, u.created_in_1c, u.password, u.role, u.email IS NOT NULL,
               u.onec_id = l.onec_id, u.sync_status, u.last_sync_at IS NOT NULL,
               u.verification_status
        FROM common_customersynclog l JOIN users u ON u.id = l.customer_id
        WHERE l.operation_type = 'created'""")
    assert len(created) == one(dsn, "SELECT count(*) FROM common_customersynclog"
                                    " WHERE operation_type = 'created'")
    for status, details, in_1c, password, _, has_email, same_guid, sync, synced, ver in created:
        assert in_1c and same_guid and sync == "synced" and synced
        # No login from the import; a password appears only when a portal account is linked.
        assert password == "" or ver == "verified"
        if status == "success":
            assert set(details) == {"role", "has_email", "customer_type"}
            assert details["role"] == "unregistered" and details["has_email"] == has_email
            assert details["customer_type"] in {"legal_entity", "individual_entrepreneur",
                                                "individual"}
        else:
            assert details == {"notes": "Клиент создан без email адреса"} and not has_email
    # one warning row per created customer without e-mail, for the same customer
    assert one(dsn, """
        SELECT count(*) FROM common_customersynclog w WHERE operation_type = 'created'
        AND status = 'warning' AND NOT EXISTS (SELECT 1 FROM common_customersynclog s
            WHERE s.operation_type = 'created' AND s.status = 'success'
            AND s.customer_id = w.customer_id AND s.details->>'has_email' = 'false')""") == 0
    updated = q(dsn, """SELECT l.details, u.role FROM common_customersynclog l
                        JOIN users u ON u.id = l.customer_id WHERE operation_type = 'updated'""")
    assert updated
    for details, _role in updated:
        assert set(details) == {"role", "role_outcome", "role_preserved"}
        assert details["role_outcome"] in ROLE_OUTCOMES
        assert details["role_preserved"] == (details["role_outcome"] not in {
            "roles_updated_from_unregistered", "roles_updated_from_assigned"})
    outcomes = {d["role_outcome"] for d, _ in updated}
    assert "roles_skipped_unlinked_record" in outcomes and "roles_already_actual" in outcomes


def test_import_sessions_hold_the_totals_of_their_rows(
    written: tuple[str, datetime, datetime],
) -> None:
    dsn, _, _ = written
    sessions = q(dsn, "SELECT id, import_type, status, started_at, finished_at, report_details,"
                      " error_message, celery_task_id FROM import_sessions")
    statuses = {s[2] for s in sessions}
    assert {"completed", "failed"} <= statuses <= {"started", "in_progress", "completed", "failed"}
    counts = {
        (sid, op): n
        for sid, op, n in q(dsn, "SELECT session, operation_type, count(*) FROM"
                                 " common_customersynclog WHERE session <> ''"
                                 " AND operation_type IN ('created', 'updated', 'skipped', 'error')"
                                 " AND status <> 'warning' GROUP BY 1, 2")
    }
    for sid, itype, status, started, finished, report, error, task in sessions:
        assert itype == "customers" and task
        if status in ("started", "in_progress"):
            assert finished is None and report == {}
            continue
        assert finished is not None and finished >= started
        if status == "failed":
            assert error and report == {}
            assert counts.get((str(sid), "error"), 0) >= 1
            continue
        assert error == ""
        for key, op in (("created", "created"), ("updated", "updated"), ("skipped", "skipped"),
                        ("errors", "error")):
            assert report[key] == counts.get((str(sid), op), 0), (sid, key)
        assert report["total"] == sum(report[k] for k in ("created", "updated", "skipped", "errors"))
        assert report["attributes_block_present"] + report["attributes_block_missing"] == (
            report["total"]
        )
        assert report["roles_updated"] == (
            report["roles_updated_from_unregistered"] + report["roles_updated_from_assigned"]
        )
        outcome_sum = sum(v for k, v in report.items() if k.startswith("roles_")) - report[
            "roles_updated"
        ]
        assert outcome_sum == report["updated"]
        outcomes = q(dsn, "SELECT details->>'role_outcome', count(*) FROM common_customersynclog"
                          " WHERE session = %s AND operation_type = 'updated' GROUP BY 1",
                     (str(sid),))
        for outcome, n in outcomes:
            assert report[outcome] == n


def test_logger_rows(written: tuple[str, datetime, datetime]) -> None:
    dsn, _, _ = written
    rows = q(dsn, """SELECT operation_type, status, details, correlation_id, session, duration_ms,
                            customer_id, onec_id, error_message
                     FROM common_customersynclog WHERE operation_type = ANY(%s)""",
             (list(LOGGER_OPS),))
    assert rows
    for op, status, details, _corr, session, duration, customer, onec_id, error in rows:
        assert session == "" and duration is not None
        expected = LOGGER_KEYS[op] | (SUCCESS_EXTRAS.get(op, set()) if status == "success"
                                      else set())
        if op == "import_from_1c" and status == "success":
            assert set(details) == expected and customer == details["platform_customer_id"]
        else:
            assert set(details) == expected, (op, status, set(details) ^ expected)
        if op == "customer_identification":
            assert details["search_method"] in {"onec_id", "onec_guid", "tax_id", "email", None}
            assert details["found"] == (status == "success") == (customer is not None)
            assert details["customer_id"] == customer
            assert (details["search_method"] is None) == (not details["found"])
        if op == "batch_operation":
            total, ok, bad = (details[k] for k in ("total_count", "success_count",
                                                   "error_count"))
            assert total == ok + bad and customer is None and onec_id == ""
            assert status == ("success" if bad == 0 else "error" if ok == 0 else "warning")
            assert details["success_rate"] == (round(ok / total * 100, 2) if total else 0)
            assert error == (f"{bad} ошибок из {total}" if bad else "")
        if op == "data_validation":
            assert customer is None and details["is_valid"] == (status == "success")
            assert error == "; ".join(details["errors"])
        if op == "export_to_1c" and status == "success":
            assert onec_id == details["assigned_1c_id"]
    methods = {d["search_method"] for op, _, d, *_ in rows if op == "customer_identification"}
    assert methods == {"onec_id", "onec_guid", "tax_id", "email", None}
    # One correlation id per logger instance: every batch summary shares it with its run, and
    # no logger correlation id is ever reused by a processor or resolver row.
    shared = q(dsn, """
        SELECT b.correlation_id, count(l.*) FROM common_customersynclog b
        JOIN common_customersynclog l ON l.correlation_id = b.correlation_id
        WHERE b.operation_type = 'batch_operation' GROUP BY 1""")
    assert shared and all(n >= 2 for _, n in shared)
    assert one(dsn, """
        SELECT count(*) FROM common_customersynclog a JOIN common_customersynclog b
        ON a.correlation_id = b.correlation_id AND a.id <> b.id
        WHERE a.duration_ms IS NULL OR b.duration_ms IS NULL""") == 0


def test_conflicts_notifications_and_legacy_rows(written: tuple[str, datetime, datetime]) -> None:
    dsn, _, _ = written
    conflicts = q(dsn, "SELECT status, details, duration_ms, customer_id, session"
                       " FROM common_customersynclog WHERE operation_type = 'conflict_resolution'")
    resolver = [c for c in conflicts if c[2] is None]
    logger = [c for c in conflicts if c[2] is not None]
    assert resolver and logger
    for status, details, _, customer, session in resolver:
        assert status == "success" and set(details) == RESOLVER_CONFLICT_KEYS  # no email_sent
        assert details["resolution_strategy"] == "onec_wins" and customer and session == ""
    for _status, details, _, _, _ in logger:
        assert set(details) == LOGGER_CONFLICT_KEYS
        assert details["conflict_source"] in {"portal_registration", "data_import"}
    assert {d["email_sent"] for _, d, *_ in logger} == {True, False}
    records = q(dsn, "SELECT conflict_type, resolution_strategy, is_resolved, resolved_at,"
                     " customer_id, details, created_at, updated_at FROM common_syncconflict")
    assert len(records) == len(resolver)  # one SyncConflict per resolver log row
    for ctype, strategy, resolved, resolved_at, customer, details, created, updated in records:
        source = details["source"]
        assert ctype == {"portal_registration": "portal_registration_blocked",
                         "data_import": "customer_data"}[source]
        assert strategy == "onec_wins" and resolved and resolved_at is not None and customer
        assert created == updated
        assert set(details) == {"source", "resolved_at", "fields_updated", "platform_data",
                                "onec_data", "conflicting_fields", "resolved_by"}
        assert details["fields_updated"] == len(details["conflicting_fields"])
    by_source = dict(q(dsn, "SELECT details->>'conflict_source', count(*) FROM"
                            " common_customersynclog WHERE operation_type = 'conflict_resolution'"
                            " AND duration_ms IS NULL GROUP BY 1"))
    by_type = dict(q(dsn, "SELECT details->>'source', count(*) FROM common_syncconflict GROUP BY 1"))
    assert by_source == by_type
    failed = q(dsn, "SELECT details, error_message, customer_id, duration_ms FROM"
                    " common_customersynclog WHERE operation_type = 'notification_failed'")
    assert failed
    assert all(d == {"error": m} and m and c and dur is None for d, m, c, dur in failed)
    legacy = q(dsn, "SELECT status, details, customer_id, session, duration_ms FROM"
                    " common_customersynclog WHERE operation_type = 'identify_customer'")
    assert legacy
    for status, details, customer, session, duration in legacy:
        assert set(details) == {"identification_method", "onec_guid", "tax_id", "email"}
        assert (status == "success") == (customer is not None) and duration is None and session
        assert (details["identification_method"] == "not_found") == (status == "not_found")
        assert details["identification_method"] in {"onec_id", "onec_guid", "tax_id", "email",
                                                    "not_found"}


def test_users_from_1c_and_from_the_portal(written: tuple[str, datetime, datetime]) -> None:
    dsn, _, _ = written
    portal = q(dsn, "SELECT role, password, needs_1c_export, is_active, email, onec_id"
                    " FROM users WHERE NOT created_in_1c")
    assert len(portal) >= 10
    assert {r[0] for r in portal} <= PORTAL_ROLES and all(r[1] for r in portal)
    assert all(r[4] for r in portal)  # portal accounts always have an e-mail
    assert sum(r[3] for r in portal) > len(portal) / 2  # mostly active
    exported = [r for r in portal if r[5] is not None]
    assert all(not r[2] for r in exported)  # an export to 1C takes the user off the queue
    from_1c = q(dsn, "SELECT role, email, onec_id FROM users WHERE created_in_1c")
    assert from_1c and all(r[2] for r in from_1c)
    assert {r[0] for r in from_1c} <= PORTAL_ROLES | {"unregistered"}
    assert any(r[1] is None for r in from_1c) and any(r[1] for r in from_1c)
    # the export queue is really used
    assert one(dsn, "SELECT count(*) FROM common_customersynclog"
                    " WHERE operation_type = 'export_to_1c'") > 0


def test_outage_fails_imports_and_calls_back(db_dsn: str) -> None:
    clock = [0.0]
    events: list[bool] = []
    sim = TrafficSimulator(
        db_dsn, random.Random(11), mix=Mix(import_gap_seconds=0),
        schedule=OutageSchedule(first=10, every=30, duration=5), clock=lambda: clock[0],
    )
    sim.on_outage.append(events.append)
    try:
        sim.step(200)
        assert events == [] and not sim.outage
        last_before = one(db_dsn, "SELECT coalesce(max(id), 0) FROM import_sessions")
        log_before = one(db_dsn, "SELECT max(id) FROM common_customersynclog")
        clock[0] = 11.0
        sim.step(400)
        assert events == [True] and sim.outage
        clock[0] = 16.0
        sim.step(50)
        assert events == [True, False]
        clock[0] = 41.0  # the next outage of the schedule
        sim.step(1)
        assert events == [True, False, True]
        sim.force_outage(False)
        assert events == [True, False, True, False]
    finally:
        sim.stop()
    # Sessions that started during the outage failed, with error rows carrying the 1C error.
    during = q(db_dsn, "SELECT id, status, error_message FROM import_sessions WHERE id > %s"
                       " AND finished_at IS NOT NULL ORDER BY id", (last_before,))
    failed = [r for r in during if r[1] == "failed"]
    assert failed and all("1c.freesport.local" in r[2] for r in failed)
    for sid, _, message in failed:
        assert one(db_dsn, "SELECT count(*) FROM common_customersynclog WHERE session = %s"
                           " AND operation_type = 'error' AND status = 'failed'"
                           " AND error_message = %s", (str(sid), message)) >= 1
    imports = q(db_dsn, "SELECT status FROM common_customersynclog WHERE id > %s AND id <= %s"
                        " AND operation_type IN ('import_from_1c', 'export_to_1c')",
                (log_before, log_before + 400))
    assert imports and all(s == "error" for (s,) in imports)


def test_error_burst_turns_processor_rows_into_errors() -> None:
    mix = Mix(import_gap_seconds=0, burst_every=(50.0, 50.0), burst_length=(10.0, 10.0),
              burst_error_rate=1.0, import_share=1.0)
    model = TrafficModel(random.Random(5), CountingIds(), mix)

    def errors_at(t: float) -> tuple[int, int]:
        model.t = t
        rows = [op for op in model.take(300) if isinstance(op, LogRow)]
        buyers = [r for r in rows if r.operation_type != "skipped"]
        return sum(r.operation_type == "error" for r in buyers), len(buyers)

    quiet, n = errors_at(0.0)
    assert not model.in_burst and quiet < 0.15 * n
    burst, n = errors_at(55.0)  # the burst runs from 50 s to 60 s
    assert model.in_burst and burst == n
    after, n = errors_at(70.0)
    assert not model.in_burst and after < 0.15 * n


def test_same_seed_same_stream() -> None:
    def stream(seed: int) -> list[Any]:
        model = TrafficModel(random.Random(seed), CountingIds(), Mix(import_gap_seconds=0))
        return [
            (op.operation_type, op.status, op.correlation_id, op.details)
            if isinstance(op, LogRow) else type(op).__name__
            for op in model.take(500)
        ]

    assert stream(3) == stream(3)
    assert stream(3) != stream(4)


def test_session_updates_follow_started_in_progress_completed() -> None:
    model = TrafficModel(random.Random(2), CountingIds(), Mix(import_gap_seconds=0,
                                                              import_share=1.0))
    updates = [op for op in model.take(400) if isinstance(op, SessionUpdate)]
    by_session: dict[int, list[str]] = {}
    for u in updates:
        by_session.setdefault(u.id, []).append(u.status)
    finished = [v for v in by_session.values() if v[-1] == "completed"]
    assert finished and all(v == ["in_progress", "completed"] for v in finished)


def test_thread_writes_at_the_rate_and_stops(db_dsn: str) -> None:
    sim = TrafficSimulator(db_dsn, random.Random(1), rate=200.0, tick=0.05,
                           schedule=NO_OUTAGES)
    batches: list[int] = []
    sim.on_batch.append(lambda ops: batches.append(len(ops)))
    sim.start()
    start = time.monotonic()
    time.sleep(1.5)
    sim.stop()
    elapsed = time.monotonic() - start
    n = one(db_dsn, "SELECT count(*) FROM common_customersynclog")
    assert 0.6 * 200 * elapsed <= n <= 1.1 * 200 * elapsed
    assert n == sim.totals.log_rows and len(batches) > 10
    assert not any(t.name == "demo-traffic" for t in threading.enumerate())


def test_restart_on_the_same_database_continues(db_dsn: str) -> None:
    first = TrafficSimulator(db_dsn, random.Random(9), schedule=NO_OUTAGES,
                             mix=Mix(import_gap_seconds=0))
    first.step(450)  # stops in the middle of an import run
    first.stop()
    open_before = one(db_dsn, "SELECT count(*) FROM import_sessions WHERE finished_at IS NULL")
    assert open_before >= 1
    second = TrafficSimulator(db_dsn, random.Random(9), schedule=NO_OUTAGES,
                              mix=Mix(import_gap_seconds=0))  # same seed: no unique clash
    second.load_state()
    assert one(db_dsn, "SELECT count(*) FROM import_sessions WHERE finished_at IS NULL") == 0
    assert len(second.model.customers_1c) == one(
        db_dsn, "SELECT count(*) FROM users WHERE created_in_1c"
    )
    second.step(1500)
    second.stop()
    # Known 1C counterparties are updated, not created twice.
    assert one(db_dsn, "SELECT count(*) FROM (SELECT onec_id FROM common_customersynclog"
                       " WHERE operation_type = 'created' AND status = 'success'"
                       " GROUP BY 1 HAVING count(*) > 1) d") == 0
    assert one(db_dsn, "SELECT count(*) FROM common_customersynclog") == 1950


def test_bulk_load_spreads_history_monotonically(db_dsn: str) -> None:
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(hours=6)
    stats = bulk_load(db_dsn, random.Random(3), 20_000, start, end, chunk=7_000)
    assert stats.log_rows == 20_000
    n, lo, hi, backwards = q(db_dsn, """
        SELECT count(*), min(created_at), max(created_at),
               count(*) FILTER (WHERE created_at < prev)
        FROM (SELECT created_at, lag(created_at) OVER (ORDER BY id) AS prev
              FROM common_customersynclog) t""")[0]
    assert n == 20_000 and start <= lo and hi < end and backwards == 0
    assert hi - lo > timedelta(hours=5, minutes=59)
    # each hour holds about a sixth of the rows
    hours = [c for (c,) in q(db_dsn, "SELECT count(*) FROM common_customersynclog"
                                     " GROUP BY date_trunc('hour', created_at)")]
    assert len(hours) in (6, 7) and max(hours) < 20_000 / 6 * 1.1
    # no row refers to a user or session that did not exist yet at its time
    assert one(db_dsn, "SELECT count(*) FROM common_customersynclog l JOIN users u"
                       " ON u.id = l.customer_id WHERE u.created_at > l.created_at") == 0
    assert one(db_dsn, "SELECT count(*) FROM common_customersynclog l JOIN import_sessions s"
                       " ON s.id::text = l.session WHERE l.operation_type <> 'identify_customer'"
                       " AND (s.started_at > l.created_at OR s.finished_at < l.created_at)") == 0
    assert one(db_dsn, "SELECT count(*) FROM users") == stats.users
    assert one(db_dsn, "SELECT count(*) FROM import_sessions") == stats.sessions
    assert one(db_dsn, "SELECT count(*) FROM common_syncconflict") == stats.conflicts
    assert one(db_dsn, "SELECT count(*) FROM import_sessions WHERE status = 'completed'") > 10
    # the whole history is in the processor/logger shapes too
    assert one(db_dsn, "SELECT count(DISTINCT operation_type) FROM common_customersynclog") == 13
