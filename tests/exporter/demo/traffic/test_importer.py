"""The 1C importer's rows (``CustomerDataProcessor``, DATA.md §3.1) and its import sessions."""

from __future__ import annotations

from tests.exporter.demo.traffic.conftest import Written, one, q

ROLE_OUTCOMES = {
    "roles_updated_from_unregistered", "roles_updated_from_assigned", "roles_already_actual",
    "roles_skipped_unlinked_record", "roles_skipped_no_data", "roles_skipped_no_agreement",
    "roles_skipped_unknown_price_type", "roles_skipped_ambiguous",
}


def test_processor_rows(written: Written) -> None:
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


def test_import_sessions_hold_the_totals_of_their_rows(written: Written) -> None:
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
