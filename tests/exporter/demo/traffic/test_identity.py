"""The legacy identity resolver's ``identify_customer`` rows (DATA.md §3.4)."""

from __future__ import annotations

from tests.exporter.demo.traffic.conftest import Written, q


def test_legacy_identification_rows(written: Written) -> None:
    dsn, _, _ = written
    legacy = q(dsn, "SELECT status, details, customer_id, session, duration_ms FROM"
                    " common_customersynclog WHERE operation_type = 'identify_customer'")
    assert legacy
    for status, details, customer, session, duration in legacy:
        assert set(details) == {"identification_method", "onec_guid", "tax_id", "email"}
        assert (status == "success") == (customer is not None) and duration is None and session
        assert (details["identification_method"] == "not_found") == (status == "not_found")
        assert details["identification_method"] in {"onec_id", "onec_guid", "tax_id", "email",
                                                    "not_found"}
