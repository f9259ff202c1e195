"""The sync logger's rows (``CustomerSyncLogger``, DATA.md §3.2): keys per method, durations,
one correlation id per logger instance."""

from __future__ import annotations

from tests.exporter.demo.traffic.conftest import Written, one, q

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


def test_logger_rows(written: Written) -> None:
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


def test_logger_conflict_rows(written: Written) -> None:
    dsn, _, _ = written
    logger = q(dsn, "SELECT details FROM common_customersynclog"
                    " WHERE operation_type = 'conflict_resolution' AND duration_ms IS NOT NULL")
    assert logger
    for (details,) in logger:
        assert set(details) == LOGGER_CONFLICT_KEYS
        assert details["conflict_source"] in {"portal_registration", "data_import"}
    assert {d["email_sent"] for (d,) in logger} == {True, False}
