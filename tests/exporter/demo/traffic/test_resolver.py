"""The conflict resolver's rows (``CustomerConflictResolver``, DATA.md §3.3): one SyncConflict
per conflict_resolution row, and the failed notifications."""

from __future__ import annotations

from tests.exporter.demo.traffic.conftest import Written, q

RESOLVER_CONFLICT_KEYS = {"conflict_source", "resolution_strategy", "conflicting_fields"}


def test_conflicts_and_notifications(written: Written) -> None:
    dsn, _, _ = written
    conflicts = q(dsn, "SELECT status, details, duration_ms, customer_id, session"
                       " FROM common_customersynclog WHERE operation_type = 'conflict_resolution'")
    resolver = [c for c in conflicts if c[2] is None]
    assert resolver and len(resolver) < len(conflicts)  # the logger writes the others
    for status, details, _, customer, session in resolver:
        assert status == "success" and set(details) == RESOLVER_CONFLICT_KEYS  # no email_sent
        assert details["resolution_strategy"] == "onec_wins" and customer and session == ""
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
