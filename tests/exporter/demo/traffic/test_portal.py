"""Portal registrations and the users the importer creates, as the ``users`` table holds them."""

from __future__ import annotations

from tests.exporter.demo.traffic.conftest import Written, one, q

PORTAL_ROLES = {
    "retail", "wholesale_level1", "wholesale_level2", "wholesale_level3", "wholesale_level4",
    "trainer", "federation_rep",
}


def test_users_from_1c_and_from_the_portal(written: Written) -> None:
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
