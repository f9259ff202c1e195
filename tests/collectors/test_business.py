"""The business collector on real PostgreSQL, with rows in every writer shape of DATA.md §3.

Each number is compared with an independent SQL query; each §6 bug has a test showing that the
seed monitor's formula gives a different answer while ours equals the truth.
"""

from __future__ import annotations

import json
import random
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from collectors.business import RECOUNT_MAX_AGE, BusinessCollector, zero_filled
from collectors.synclog_source import SyncLogSource
from exporter.collector import CollectorError, Deadline, Reason
from exporter.config import BusinessConfig, DatabaseConfig, SyncLogConfig
from exporter.db import Database
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

pytestmark = pytest.mark.every_pg_major


@pytest.fixture
def business(exporter_dsn: str) -> Iterator[tuple[BusinessCollector, Clock]]:
    db = Database(DatabaseConfig(dsn=exporter_dsn))  # type: ignore[arg-type]
    clock = Clock()
    source = SyncLogSource(db, SyncLogConfig(), clock=clock)
    yield BusinessCollector(db, BusinessConfig(), source=source), clock
    db.close()


def stats_flushed(conn: psycopg.Connection[Any]) -> None:
    """Make the table statistics of ``conn``'s writes visible now. The collector recounts
    users and conflicts when those statistics move, and a session that flushed them within the
    last second holds new ones back for up to ten (PostgreSQL 15+): no sleep would be sure."""
    conn.execute("SELECT pg_stat_force_next_flush()")


def scrape(collector: BusinessCollector) -> Samples:
    end = time.monotonic() + 10
    while True:
        try:
            return samples(collector.collect(Deadline.after(5)))
        except CollectorError as exc:
            if exc.reason is not Reason.TIMEOUT or time.monotonic() > end:
                raise
            time.sleep(0.1)


# --- writer shapes (DATA.md §3) ----------------------------------------------------------------


def processor_rows(rng: random.Random, session: int, customers: list[int], at: float) -> list[LogRow]:
    """CustomerDataProcessor: created/updated/skipped/error, duration NULL, session = import id."""
    rows = []
    for _ in range(rng.randint(5, 15)):
        kind = rng.choice(["created", "updated", "skipped", "error"])
        when = ts(at - rng.uniform(0, 3000))
        if kind == "created":
            cid = rng.choice(customers)
            rows.append(LogRow("created", "success", when, None, cid, {
                "role": "unregistered", "has_email": False, "customer_type": "legal_entity"},
                str(session)))
            rows.append(LogRow("created", "warning", when, None, cid, {
                "notes": "Клиент создан без email адреса"}, str(session)))
        elif kind == "updated":
            rows.append(LogRow("updated", "success", when, None, rng.choice(customers), {
                "role": "unregistered", "role_outcome": "roles_skipped_unlinked_record",
                "role_preserved": True}, str(session)))
        elif kind == "skipped":
            rows.append(LogRow("skipped", "success", when, None, None,
                               {"reason": "not_buyer", "role": "Поставщик"}, str(session)))
        else:
            rows.append(LogRow("error", "failed", when, None, None, {}, str(session),
                               "Невалидный формат email: x@"))
    return rows


def logger_rows(rng: random.Random, customers: list[int], at: float) -> list[LogRow]:
    """CustomerSyncLogger: every op type with its details keys and a duration."""
    rows = []
    for _ in range(rng.randint(5, 15)):
        when = ts(at - rng.uniform(0, 3000))
        dur = rng.randint(1, 4000)
        found = rng.random() < 0.7
        pick_one = rng.choice([
            LogRow("customer_identification", "success" if found else "skipped", when, dur,
                   rng.choice(customers) if found else None, {
                       "search_method": rng.choice(["onec_id", "onec_guid", "tax_id", "email",
                                                    None]),
                       "search_value": "x", "normalized_value": "x", "found": found,
                       "customer_id": None}),
            LogRow("conflict_resolution", rng.choice(["success", "error"]), when, dur,
                   rng.choice(customers), {
                       "conflict_source": rng.choice(["portal_registration", "data_import"]),
                       "resolution_strategy": "onec_wins", "conflicting_fields": ["email"],
                       "changes_made": {}, "action": "data_updated",
                       "email_sent": rng.random() < 0.5, "sync_conflict_id": None}),
            LogRow("import_from_1c", rng.choice(["success", "error"]), when, dur,
                   rng.choice(customers), {"source": "1c_export"}),
            LogRow("export_to_1c", "success", when, dur, rng.choice(customers),
                   {"destination": "1c_api"}),
            LogRow("batch_operation", rng.choice(["success", "warning", "error"]), when, dur, None,
                   {"operation_name": "x", "total_count": 3}),
            LogRow("data_validation", "success", when, dur, None, {"is_valid": True}),
        ])
        rows.append(pick_one)
    return rows


def resolver(conn: psycopg.Connection[Any], customer: int, source: str, at: float,
             notify_fails: bool) -> list[LogRow]:
    """CustomerConflictResolver: a SyncConflict row, a log row without email_sent, maybe a failure."""
    ctype = "portal_registration_blocked" if source == "portal_registration" else "customer_data"
    conn.execute(
        "INSERT INTO common_syncconflict (conflict_type, resolution_strategy, is_resolved,"
        " resolved_at, created_at, customer_id, details, updated_at)"
        " VALUES (%s, 'onec_wins', true, %s, %s, %s, %s, %s)",
        (ctype, ts(at), ts(at), customer, json.dumps({"source": source,
                                                       "resolved_by": "CustomerConflictResolver"}),
         ts(at)),
    )
    rows = [LogRow("conflict_resolution", "success", ts(at), None, customer, {
        "conflict_source": source, "resolution_strategy": "onec_wins",
        "conflicting_fields": ["phone"]})]
    if notify_fails:
        rows.append(LogRow("notification_failed", "warning", ts(at), None, None,
                           {"error": "SMTP down"}, error_message="SMTP down"))
    return rows


def identity_resolver_rows(at: float) -> list[LogRow]:
    """Legacy CustomerIdentityResolver rows (undeclared op and status)."""
    return [
        LogRow("identify_customer", "success", ts(at), None, None,
               {"identification_method": "tax_id", "tax_id": "7701234567"}),
        LogRow("identify_customer", "not_found", ts(at), None, None,
               {"identification_method": "not_found"}),
    ]


def import_session(conn: psycopg.Connection[Any], status: str, finished: float | None) -> int:
    row = conn.execute(
        "INSERT INTO import_sessions (import_type, status, started_at, finished_at, report_details,"
        " error_message, created_at, report, updated_at) VALUES ('customers', %s, %s, %s, '{}', '',"
        " %s, '', %s) RETURNING id",
        (status, ts(NOW - 4000), None if finished is None else ts(finished), ts(NOW - 4000),
         ts(NOW - 4000)),
    ).fetchone()
    assert row is not None
    return int(row[0])


def write_mixed(conn: psycopg.Connection[Any], seed: int) -> None:
    rng = random.Random(seed)
    imported = insert_users(conn, 6, created_in_1c=True, role="unregistered",
                            created_at=ts(NOW - 600))
    portal = insert_users(conn, 4, role="retail", needs_export=True, created_at=ts(NOW - 100))
    insert_users(conn, 2, role="wholesale_level2", needs_export=True, active=False,
                 created_at=ts(NOW - 90000))
    customers = imported + portal
    session = import_session(conn, "completed", NOW - 3500)
    import_session(conn, "failed", NOW - 100)
    import_session(conn, "in_progress", None)
    rows = processor_rows(rng, session, imported, NOW) + logger_rows(rng, customers, NOW)
    for i in range(rng.randint(2, 6)):
        rows += resolver(conn, rng.choice(customers), rng.choice(["portal_registration",
                                                                  "data_import"]),
                         NOW - 50 * i, rng.random() < 0.3)
    rows += identity_resolver_rows(NOW - 10)
    insert_rows(conn, rows)


# --- ground truth ------------------------------------------------------------------------------


def q(conn: psycopg.Connection[Any], query: str, *params: Any) -> dict[Any, Any]:
    return {tuple(r[:-1]) if len(r) > 2 else r[0]: r[-1] for r in conn.execute(query, params)}


@pytest.mark.parametrize("seed", [1, 2])
def test_every_number_equals_sql(conn, business, seed: int) -> None:
    collector, clock = business
    write_mixed(conn, seed)
    stats_flushed(conn)  # table statistics gate the conflict recount
    for round_ in range(2):
        found = scrape(collector)
        t = ts(clock.now)
        conflicts = q(conn, "SELECT coalesce(details->>'conflict_source', 'unknown'), status,"
                      " count(*) FROM common_customersynclog WHERE operation_type ="
                      " 'conflict_resolution' GROUP BY 1, 2")
        assert {k: v for k, v in pick(found, "customer_sync_conflicts_total").items() if v} == {
            (("source", s), ("status", st)): n for (s, st), n in conflicts.items()}
        idents = q(conn, "SELECT coalesce(details->>'search_method', 'none'),"
                   " coalesce(details->>'found', 'false'), count(*) FROM common_customersynclog"
                   " WHERE operation_type = 'customer_identification' GROUP BY 1, 2")
        legacy = q(conn, "SELECT CASE WHEN details->>'identification_method' = 'not_found'"
                   " THEN 'none' ELSE details->>'identification_method' END,"
                   " (status = 'success')::text, count(*) FROM common_customersynclog"
                   " WHERE operation_type = 'identify_customer' GROUP BY 1, 2")
        for k, v in legacy.items():
            idents[k] = idents.get(k, 0) + v
        assert {k: v for k, v in pick(found, "customer_sync_identifications_total").items()
                if v} == {(("found", f), ("method", m)): n for (m, f), n in idents.items()}
        (sent,) = conn.execute("SELECT count(*) FROM common_customersynclog WHERE operation_type ="
                               " 'conflict_resolution' AND details->>'email_sent' = 'true'"
                               ).fetchone()
        (failed,) = conn.execute("SELECT count(*) FROM common_customersynclog WHERE"
                                 " operation_type = 'notification_failed'").fetchone()
        assert pick(found, "customer_sync_admin_notifications_total") == {
            (("result", "sent"),): sent, (("result", "failed"),): failed}
        for label, seconds in {"5m": 300, "1h": 3600, "24h": 86400}.items():
            (n,) = conn.execute(
                "SELECT count(DISTINCT customer_id) FROM common_customersynclog WHERE status ="
                " 'success' AND created_at > %s AND created_at <= %s",
                (t - timedelta(seconds=seconds), t)).fetchone()
            assert found[("customer_sync_recent_customers_synced", (("window", label),))] == n
            created = q(conn, "SELECT CASE WHEN created_in_1c THEN '1c_import' ELSE 'portal' END,"
                        " count(*) FROM users WHERE created_at > %s AND created_at <= %s"
                        " GROUP BY 1", t - timedelta(seconds=seconds), t)
            assert {k: v for k, v in pick(found, "customer_sync_recent_customers_created",
                                          window=label).items() if v} == {
                (("origin", o),): n for o, n in created.items()}
        customers = q(conn, "SELECT CASE WHEN created_in_1c THEN '1c_import' ELSE 'portal' END,"
                      " role, count(*) FROM users GROUP BY 1, 2")
        assert {k: v for k, v in pick(found, "customer_sync_customers").items() if v} == {
            (("origin", o), ("role", r)): n for (o, r), n in customers.items()}
        (queue,) = conn.execute("SELECT count(*) FROM users WHERE needs_1c_export AND is_active"
                                ).fetchone()
        assert found[("customer_sync_export_queue_customers", ())] == queue
        records = q(conn, "SELECT conflict_type, resolution_strategy, is_resolved::text, count(*)"
                    " FROM common_syncconflict GROUP BY 1, 2, 3")
        assert {k: v for k, v in pick(found, "customer_sync_conflict_records").items() if v} == {
            (("conflict_type", c), ("resolution_strategy", s), ("resolved", r)): n
            for (c, s, r), n in records.items()}
        sessions = q(conn, "SELECT import_type, status, count(*) FROM import_sessions"
                     " GROUP BY 1, 2")
        assert {k: v for k, v in pick(found, "customer_sync_import_sessions").items() if v} == {
            (("import_type", i), ("status", s)): n for (i, s), n in sessions.items()}
        finished = q(conn, "SELECT import_type, status, max(finished_at) FROM import_sessions"
                     " WHERE finished_at IS NOT NULL GROUP BY 1, 2")
        assert pick(found, "customer_sync_last_import_finished_timestamp_seconds") == (
            pytest.approx({(("import_type", i), ("status", s)): v.timestamp()
                           for (i, s), v in finished.items()}))
        if round_ == 0:  # more traffic, later: the counters grow, the windows slide
            clock.now += 400
            write_mixed(conn, seed + 10)
            stats_flushed(conn)


def test_zero_filled_adds_every_known_combination_and_keeps_the_rest() -> None:
    counts = {("a", "true"): 3, ("z", "false"): 1}
    assert zero_filled(counts, ["b", "a"], ["true", "false"]) == [
        (("a", "false"), 0), (("a", "true"), 3), (("b", "false"), 0), (("b", "true"), 0),
        (("z", "false"), 1)]


def test_known_label_values_are_exported_as_zero(business) -> None:
    collector, _ = business
    found = scrape(collector)
    assert found[("customer_sync_conflicts_total",
                  (("source", "unknown"), ("status", "success")))] == 0
    assert found[("customer_sync_identifications_total",
                  (("found", "true"), ("method", "onec_guid")))] == 0
    assert found[("customer_sync_customers", (("origin", "portal"), ("role", "trainer")))] == 0
    assert found[("customer_sync_import_sessions",
                  (("import_type", "customers"), ("status", "failed")))] == 0
    assert found[("customer_sync_conflict_records", (("conflict_type", "customer_data"),
                  ("resolution_strategy", "onec_wins"), ("resolved", "true")))] == 0
    assert found[("customer_sync_export_queue_customers", ())] == 0


# --- one test per DATA.md §6 bug: the seed's formula differs, ours equals the truth ---------------


def _resolved_conflicts(conn: psycopg.Connection[Any]) -> list[int]:
    customers = insert_users(conn, 5)
    rows: list[LogRow] = []
    for i, source in enumerate(["portal_registration"] * 3 + ["data_import"] * 2):
        rows += resolver(conn, customers[i], source, NOW - 10, False)
    insert_rows(conn, rows)
    stats_flushed(conn)
    return customers


def test_bug1_conflicts_grouped_by_conflict_source(conn, business) -> None:
    _resolved_conflicts(conn)
    seed = q(conn, "SELECT coalesce(details->>'conflict_type', 'unknown'), count(*) FROM"
             " common_customersynclog WHERE operation_type = 'conflict_resolution' AND status ="
             " 'success' GROUP BY 1")
    assert seed == {"unknown": 5}
    found = pick(scrape(business[0]), "customer_sync_conflicts_total", status="success")
    truth = q(conn, "SELECT details->>'conflict_source', count(*) FROM common_customersynclog"
              " WHERE operation_type = 'conflict_resolution' GROUP BY 1")
    assert {dict(k)["source"]: v for k, v in found.items() if v} == truth == {
        "portal_registration": 3, "data_import": 2}


def test_bug2_identification_by_search_method(conn, business) -> None:
    insert_rows(conn, [LogRow("customer_identification", "success", ts(NOW - 5), 3, None,
                              {"search_method": m, "found": True}) for m in ("tax_id", "email",
                                                                              "tax_id")])
    seed = q(conn, "SELECT coalesce(details->>'identification_method', 'unknown'), count(*) FROM"
             " common_customersynclog WHERE operation_type = 'customer_identification' AND"
             " status = 'success' GROUP BY 1")
    assert seed == {"unknown": 3}
    found = pick(scrape(business[0]), "customer_sync_identifications_total", found="true")
    assert {dict(k)["method"]: v for k, v in found.items() if v} == {"tax_id": 2, "email": 1}


def test_bug3_auto_resolution_ratio_is_resolved_over_total(conn, business) -> None:
    _resolved_conflicts(conn)
    total = 5
    seed_rate = 1 / total * 100  # len(dict keys) / total * 100 with everything under "unknown"
    found = pick(scrape(business[0]), "customer_sync_conflict_records")
    auto = sum(v for k, v in found.items()
               if dict(k)["resolved"] == "true" and dict(k)["resolution_strategy"] == "onec_wins")
    (truth,) = conn.execute("SELECT avg((is_resolved AND resolution_strategy = 'onec_wins')::int)"
                            " FROM common_syncconflict").fetchone()
    assert auto / sum(found.values()) == float(truth) == 1.0
    assert seed_rate / 100 != 1.0


def test_bug4_notifications_are_not_conflicts_plus_errors(conn, business) -> None:
    customers = insert_users(conn, 2)
    rows = resolver(conn, customers[0], "data_import", NOW - 5, notify_fails=True)
    rows += [LogRow("conflict_resolution", "success", ts(NOW - 5), 10, customers[1],
                    {"conflict_source": "portal_registration", "email_sent": True})]
    rows += [LogRow("error", "failed", ts(NOW - 5), None, None, {}, "1")] * 4
    insert_rows(conn, rows)
    (seed,) = conn.execute("SELECT count(*) FROM common_customersynclog WHERE operation_type IN"
                           " ('conflict_resolution', 'error')").fetchone()
    assert seed == 6
    found = pick(scrape(business[0]), "customer_sync_admin_notifications_total")
    assert found == {(("result", "sent"),): 1, (("result", "failed"),): 1}


def test_bug5_registrations_come_from_users_not_log_rows(conn, business) -> None:
    insert_users(conn, 3, created_at=ts(NOW - 100))
    insert_users(conn, 2, created_in_1c=True, role="unregistered", created_at=ts(NOW - 100))
    (seed,) = conn.execute("SELECT count(*) FROM common_customersynclog WHERE operation_type ="
                           " 'export_to_1c' AND status = 'success'").fetchone()
    assert seed == 0
    found = pick(scrape(business[0]), "customer_sync_recent_customers_created", window="5m")
    assert found == {(("origin", "portal"),): 3, (("origin", "1c_import"),): 2}


def test_bug6_synced_customers_exclude_null(conn, business) -> None:
    customers = insert_users(conn, 2)
    insert_rows(conn, [LogRow("updated", "success", ts(NOW - 5), None, c) for c in customers])
    insert_rows(conn, [LogRow("skipped", "success", ts(NOW - 5), None, None)] * 3)
    (seed,) = conn.execute("SELECT count(*) FROM (SELECT DISTINCT customer_id FROM"
                           " common_customersynclog WHERE status = 'success') d").fetchone()
    assert seed == 3  # NULL counted as a customer
    found = scrape(business[0])
    assert found[("customer_sync_recent_customers_synced", (("window", "5m"),))] == 2


def test_users_and_conflicts_are_served_while_the_log_is_read(db_dsn: str, exporter_dsn: str,
                                                              conn) -> None:
    insert_users(conn, 2, needs_export=True)
    db = Database(DatabaseConfig(dsn=exporter_dsn))  # type: ignore[arg-type]
    locker = psycopg.connect(db_dsn)
    try:
        locker.execute("LOCK TABLE common_customersynclog IN ACCESS EXCLUSIVE MODE")
        collector = BusinessCollector(
            db, BusinessConfig(), source=SyncLogSource(db, SyncLogConfig(), clock=Clock()))
        with pytest.raises(CollectorError) as failed:
            collector.collect(Deadline.after(3))
        assert failed.value.reason is Reason.TIMEOUT
        partial = samples(failed.value.partial)
        assert partial[("customer_sync_export_queue_customers", ())] == 2
        assert not pick(partial, "customer_sync_conflicts_total")
    finally:
        locker.close()
        db.close()



def test_export_queue_oldest_age_equals_sql(conn, business) -> None:
    """Age of the oldest active user waiting for export, from updated_at, against SQL at the
    collector's own now (the injected clock); it grows with the clock while the table rests."""
    collector, clock = business

    def write(query: str, params: tuple[Any, ...] = ()) -> None:
        conn.execute(query, params)
        stats_flushed(conn)  # the collector re-reads users when its statistics move

    ages = {"old": 3600.5, "new": 100.0, "inactive": 99_999.0, "not_waiting": 50_000.0}
    ids = {name: insert_users(conn, 1, needs_export=name != "not_waiting",
                              active=name != "inactive")[0] for name in ages}
    for name, age in ages.items():
        write("UPDATE users SET updated_at = %s WHERE id = %s", (ts(clock.now - age), ids[name]))

    def expected() -> float:
        (age,) = conn.execute(
            "SELECT coalesce(extract(epoch FROM %s::timestamptz - min(updated_at)), 0)::float8"
            " FROM users WHERE needs_1c_export AND is_active", (ts(clock.now),)).fetchone()
        return float(age)

    name = ("customer_sync_export_queue_oldest_age_seconds", ())
    assert scrape(collector)[name] == expected() == 3600.5
    clock.now += 60  # no write: the age still follows the clock
    assert scrape(collector)[name] == expected() == 3660.5
    write("UPDATE users SET needs_1c_export = false WHERE id = %s", (ids["old"],))
    assert scrape(collector)[name] == expected() == 160.0
    write("UPDATE users SET needs_1c_export = false")
    assert scrape(collector)[name] == expected() == 0.0


def test_tables_are_recounted_after_a_while_when_statistics_do_not_move(exporter_dsn: str,
                                                                         conn) -> None:
    """Writes the statistics never see (``track_counts`` off for the writer): the cached counts
    stand until ``RECOUNT_MAX_AGE`` has passed on the collector's clock, then equal SQL."""
    db = Database(DatabaseConfig(dsn=exporter_dsn))  # type: ignore[arg-type]
    monotonic = Clock(0.0)
    collector = BusinessCollector(db, BusinessConfig(), monotonic=monotonic,
                                  source=SyncLogSource(db, SyncLogConfig(), clock=Clock()))
    try:
        insert_users(conn, 2)
        stats_flushed(conn)
        name = ("customer_sync_customers", (("origin", "portal"), ("role", "retail")))
        assert scrape(collector)[name] == 2
        conn.execute("SET track_counts = off")
        insert_users(conn, 3)
        resolver(conn, 1, "data_import", NOW - 5, notify_fails=False)
        stats_flushed(conn)
        monotonic.now += RECOUNT_MAX_AGE - 1
        found = scrape(collector)
        assert found[name] == 2  # nothing told the collector
        assert not any(pick(found, "customer_sync_conflict_records").values())
        monotonic.now += 2
        found = scrape(collector)
        assert (found[name],) == conn.execute("SELECT count(*) FROM users").fetchone() == (5,)
        assert sum(pick(found, "customer_sync_conflict_records").values()) == 1
    finally:
        db.close()


def test_a_view_has_no_statistics_and_is_recounted_every_scrape(db_dsn: str, conn) -> None:
    """A view (no storage, no activity counters of its own) configured as a table: nothing can
    say it is unchanged, so every scrape counts it again and equals SQL at once."""
    conn.execute("CREATE VIEW conflicts_view AS SELECT * FROM common_syncconflict")
    db = Database(DatabaseConfig(dsn=db_dsn))  # type: ignore[arg-type]
    collector = BusinessCollector(db, BusinessConfig(conflicts_table="conflicts_view"),
                                  source=SyncLogSource(db, SyncLogConfig(), clock=Clock()))
    try:
        assert not any(pick(scrape(collector), "customer_sync_conflict_records").values())
        conn.execute("SET track_counts = off")  # and the table's counters do not move either
        customer = insert_users(conn, 1)[0]
        resolver(conn, customer, "data_import", NOW - 5, notify_fails=False)
        found = pick(scrape(collector), "customer_sync_conflict_records")
        (n,) = conn.execute("SELECT count(*) FROM conflicts_view").fetchone()  # type: ignore[misc]
        assert sum(found.values()) == n == 1
    finally:
        db.close()


# --- values without a finite meaning (issue 12 §2) -----------------------------------------------


def label(value: str | None, absent: str) -> str:
    """A details value as a label: ``absent`` for null or empty, other when not exportable
    (over 100 characters, or any character of Unicode's Other or Separator classes but space)."""
    if not value:
        return absent
    if len(value) > 100 or any(unicodedata.category(c)[0] in "CZ" and c != " " for c in value):
        return "other"
    return value


def test_poison_rows_leave_every_business_number_exact(conn, business) -> None:
    collector, clock = business
    customers = insert_users(conn, 3, created_at=ts(NOW - 100))
    insert_users(conn, 1, created_at="infinity")  # type: ignore[arg-type]
    insert_users(conn, 1, created_in_1c=True, created_at="-infinity")  # type: ignore[arg-type]
    for finished in ("infinity", "-infinity", ts(NOW - 50)):
        conn.execute("INSERT INTO import_sessions (import_type, status, started_at, finished_at,"
                     " report_details, error_message, created_at, report, updated_at) VALUES"
                     " ('customers', 'completed', now(), %s::timestamptz, '{}', '', now(), '',"
                     " now())", (finished,))
    long_text = "z" * 150
    details = [
        "null", "[1, 2]", '"a string"', "42", '{"conflict_source": {"a": 1}, "email_sent": 1}',
        '{"conflict_source": 5, "email_sent": "yes"}', '{"conflict_source": "", "email_sent": true}',
        '{"conflict_source": null, "email_sent": "true"}', '{"conflict_source": true}',
        '{"conflict_source": "' + long_text + '"}', '{"conflict_source": "a\\u0007b"}',
        '{"search_method": ["tax_id"], "found": "TRUE"}', '{"search_method": "", "found": 1}',
        '{"search_method": "\\u001b[0m", "found": true}', '{"search_method": 7, "found": "true"}',
        '{"found": null}', '{"identification_method": ""}', '{"identification_method": 12}',
        '{"identification_method": {"x": 1}}', '{"identification_method": "\\t"}',
    ]
    ops = ("conflict_resolution", "customer_identification", "identify_customer")
    for _phase in ("start-up pass", "tail"):
        for created_at in ("infinity", "-infinity", ts(NOW - 20)):
            for d in details:
                for op in ops:
                    for status in ("success", "error"):
                        conn.execute(
                            "INSERT INTO common_customersynclog (onec_id, operation_type, status,"
                            " error_message, details, created_at, session, correlation_id,"
                            " customer_id, duration_ms, updated_at, user_agent) VALUES ('', %s,"
                            " %s, '', %s::jsonb, %s::timestamptz, '', gen_random_uuid(), %s,"
                            " NULL, now(), '')", (op, status, d, created_at, customers[len(d) % 3]),
                        )
        assert_poison_exact(conn, scrape(collector), clock.now)  # scrape raises on a failure


def assert_poison_exact(conn: psycopg.Connection[Any], found: Samples, now: float) -> None:
    rows = conn.execute(
        "SELECT operation_type, status, details->>'conflict_source', details->>'email_sent',"
        " details->>'search_method', details->>'found', details->>'identification_method'"
        " FROM common_customersynclog").fetchall()
    conflicts: Counter[tuple[tuple[str, str], ...]] = Counter()
    idents: Counter[tuple[tuple[str, str], ...]] = Counter()
    sent = 0
    for op, status, source, email, method, found_flag, legacy in rows:
        if op == "conflict_resolution":
            conflicts[(("source", label(source, "unknown")), ("status", status))] += 1
            sent += email == "true"
        elif op == "customer_identification":
            idents[(("found", "true" if found_flag == "true" else "false"),
                    ("method", label(method, "none")))] += 1
        else:
            method = "none" if legacy == "not_found" else label(legacy, "none")
            idents[(("found", "true" if status == "success" else "false"),
                    ("method", method))] += 1
    assert {k: v for k, v in pick(found, "customer_sync_conflicts_total").items() if v} == conflicts
    assert {k: v for k, v in pick(found, "customer_sync_identifications_total").items()
            if v} == idents
    assert found[("customer_sync_admin_notifications_total", (("result", "sent"),))] == sent
    t = ts(now)
    for window, seconds in {"5m": 300, "1h": 3600, "24h": 86400}.items():
        (synced,) = conn.execute(
            "SELECT count(DISTINCT customer_id) FROM common_customersynclog WHERE status ="
            " 'success' AND created_at > %s AND created_at <= %s",
            (t - timedelta(seconds=seconds), t)).fetchone()
        assert found[("customer_sync_recent_customers_synced", (("window", window),))] == synced
        created = q(conn, "SELECT CASE WHEN created_in_1c THEN '1c_import' ELSE 'portal' END,"
                    " count(*) FROM users WHERE created_at > %s AND created_at <= %s GROUP BY 1",
                    t - timedelta(seconds=seconds), t)
        assert {k: v for k, v in pick(found, "customer_sync_recent_customers_created",
                                      window=window).items() if v} == {
            (("origin", o),): n for o, n in created.items()}
    assert found[("customer_sync_customers", (("origin", "portal"), ("role", "retail")))] == 4
    (newest,) = conn.execute("SELECT extract(epoch FROM max(finished_at))::float8 FROM"
                             " import_sessions WHERE finished_at > '-infinity' AND finished_at"
                             " < 'infinity'").fetchone()
    assert pick(found, "customer_sync_last_import_finished_timestamp_seconds") == {
        (("import_type", "customers"), ("status", "completed")): pytest.approx(newest)}
    assert found[("customer_sync_import_sessions",
                  (("import_type", "customers"), ("status", "completed")))] == 3


def test_a_quiet_scrape_hands_the_same_families_again(conn, business) -> None:
    """Unchanged table reads and log numbers build nothing (the exposition then reuses their
    encoding); a changed table is built again, and equals SQL."""
    collector, _clock = business
    import_session(conn, "completed", time.time())
    scrape(collector)
    first = {f.name: f for f in collector.collect(Deadline.after(10))}
    second = {f.name: f for f in collector.collect(Deadline.after(10))}
    for name in ("customer_sync_customers", "customer_sync_conflict_records",
                 "customer_sync_import_sessions", "customer_sync_conflicts",
                 "customer_sync_recent_customers_synced"):
        assert second[name] is first[name]
    import_session(conn, "failed", None)
    third = {f.name: f for f in collector.collect(Deadline.after(10))}
    assert third["customer_sync_import_sessions"] is not first["customer_sync_import_sessions"]
    served = {tuple(sorted(s.labels.items())): s.value
              for s in third["customer_sync_import_sessions"].samples if s.value}
    truth = q(conn, "SELECT import_type, status, count(*) FROM import_sessions GROUP BY 1, 2")
    assert served == {(("import_type", t), ("status", st)): n for (t, st), n in truth.items()}
