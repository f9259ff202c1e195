"""(e) The legacy ``CustomerIdentityResolver``: ``identify_customer`` rows (DATA.md §3.4).

In FREESPORT it logs only when given a session, and then fails for want of a correlation id; the
demo writes the rows it would write (with the last import session and a correlation id, which
the database needs) so the exporter's handling of the undeclared operation and status is seen.
"""

from __future__ import annotations

from collections.abc import Iterator

from exporter.demo.traffic.rows import LogRow, Op
from exporter.demo.traffic.state import TrafficState


def legacy_identify(state: TrafficState) -> Iterator[Op]:
    """One lookup of a catalog counterparty: found (by onec_id, tax_id or e-mail) or not."""
    rng = state.rng
    cp = rng.choice(state.catalog) if state.catalog else None
    user = cp.customer if cp is not None and rng.random() < 0.7 else None
    method = "not_found"
    if user is not None:
        method = "onec_id" if user.onec_id else ("tax_id" if user.tax_id else "email")
    yield LogRow(
        "identify_customer", "success" if user else "not_found", state.draw.uuid4(),
        onec_id=cp.onec_id if cp else "",
        details={
            "identification_method": method,
            "onec_guid": str(user.onec_guid) if user and user.onec_guid else None,
            "tax_id": cp.tax_id if cp else None, "email": cp.email if cp else None,
        },
        session=str(state.last_session_id), customer_id=user.id if user else None,
    )
