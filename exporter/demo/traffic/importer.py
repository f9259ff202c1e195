"""(a) ``CustomerDataProcessor``, the production writer: the 1C import runs (DATA.md §3.1).

An import run opens an ``import_sessions`` row, writes one ``created/updated/skipped/error`` row
per counterparty of the 1C export (a NEW correlation id per row, no duration, ``session`` =
the session id as text) and closes the session with the run's totals in ``report_details``.
During a 1C outage a run fails after a few error rows.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

from exporter.demo.traffic.rows import (
    STAMP,
    LogRow,
    Op,
    SessionRow,
    SessionUpdate,
    UserRow,
    UserUpdate,
)
from exporter.demo.traffic.state import Counterparty, Customer, TrafficState, Writer
from exporter.demo.traffic.values import (
    B2B_ROLES,
    IMPORTED_ROLE,
    OUTAGE_ERRORS,
    PROCESSOR_ERRORS,
    ROLE_STATS_KEYS,
    ROLE_UPDATED,
)


def create_1c_customer(state: TrafficState, cp: Counterparty) -> Generator[Op, None, Customer]:
    """``_create_customer``: password '', role unregistered, email NULL when absent."""
    parts = cp.name.split()
    last, first = (parts[0], " ".join(parts[1:])) if len(parts) >= 2 else (cp.name, "")
    if cp.customer_type != "individual":
        last, first = "", ""
    user = Customer(
        id=cp.number, email=cp.email or None, tax_id=cp.tax_id, role=IMPORTED_ROLE,
        created_in_1c=True, first_name=first, last_name=last, phone=f"+7{cp.phone[2:]}",
        company_name=cp.name if cp.customer_type != "individual" else "",
        onec_id=cp.onec_id,
    )
    cp.customer = user
    state.customers_1c.append(user)
    state.by_customer[user.id] = cp
    yield UserRow(
        id=user.id, email=user.email, role=IMPORTED_ROLE, created_in_1c=True, password="",
        first_name=first, last_name=last, phone=user.phone, company_name=user.company_name,
        tax_id=cp.tax_id, onec_id=cp.onec_id, sync_status="synced", synced=True,
        onec_price_type_id=state.draw.guid(0) if cp.has_attributes and state.rng.random() < 0.1
        else "",
    )
    return user


def _new_stats() -> dict[str, Any]:
    return {
        "total": 0, "created": 0, "updated": 0, "skipped": 0, "errors": 0,
        "attributes_block_present": 0, "attributes_block_missing": 0,
        **dict.fromkeys(ROLE_STATS_KEYS, 0),
    }


class CustomerImporter(Writer):
    """The 1C import lane: idle between runs, a run every ``import_gap_seconds``."""

    def lane(self) -> Iterator[Op | None]:
        """Import runs forever; ``None`` while idle (between runs, or waiting out an outage)."""
        next_start = self.state.t
        while True:
            while self.state.t < next_start or (self.state.outage and self.rng.random() < 0.97):
                yield None  # idle between runs; during an outage a retry is rare
            yield from self._run()
            next_start = self.state.t + self.state.mix.import_gap_seconds

    def _run(self) -> Iterator[Op]:
        sid = self.state.ids.next_session_id()
        self.state.last_session_id = sid
        session = str(sid)
        yield SessionRow(sid, celery_task_id=str(self.draw.uuid4()))
        stats = _new_stats()
        for i, cp in enumerate(self._run_counterparties()):
            if self.state.outage:
                yield from self._fail_run(sid, session, cp)
                return
            yield from self._process(cp, session, stats)
            if i == 0:
                yield SessionUpdate(sid, "in_progress")
        stats["roles_updated"] = (
            stats["roles_updated_from_unregistered"] + stats["roles_updated_from_assigned"]
        )
        stats["attributes_block_anomaly"] = (
            stats["total"] > 0 and stats["attributes_block_present"] == 0
        )
        yield SessionUpdate(sid, "completed", finished=True, report_details=stats)

    def _run_counterparties(self) -> list[Counterparty]:
        """The counterparties of this run's export: the newest ones, then a sample."""
        catalog, mix = self.state.catalog, self.state.mix
        if not catalog:
            self.state.fill_catalog()
        else:
            added = self.rng.randint(*mix.new_counterparties)
            catalog.extend(self.state.new_counterparty() for _ in range(added))
        size = min(len(catalog), self.rng.randint(*mix.import_size))
        # The newest counterparties are always in the export; the rest is a sample.
        fresh = [c for c in catalog[-20:] if c.customer is None and c.onec_role]
        rest = self.rng.sample(catalog, size)
        seen: set[int] = set()
        out = []
        for c in fresh + rest:
            if c.number not in seen:
                seen.add(c.number)
                out.append(c)
        return out[: max(size, len(fresh))]

    def _fail_run(self, sid: int, session: str, cp: Counterparty) -> Iterator[Op]:
        message = self.rng.choice(OUTAGE_ERRORS)
        catalog = self.state.catalog
        for party in [cp, *self.rng.sample(catalog, min(len(catalog), 5))][
            : self.rng.randint(2, 6)
        ]:
            yield self._row(party.onec_id, session, "error", "failed", error=message)
        yield SessionUpdate(sid, "failed", finished=True, error_message=message)

    def _row(
        self, onec_id: str, session: str, op: str, status: str, *,
        error: str = "", details: dict[str, Any] | None = None, customer: int | None = None,
    ) -> LogRow:
        """``_log_operation``: a NEW correlation id per row, no duration."""
        return LogRow(
            op, status, self.draw.uuid4(), onec_id=onec_id, error_message=error,
            details=details or {}, session=session, customer_id=customer,
        )

    def _process(self, cp: Counterparty, session: str, stats: dict[str, Any]) -> Iterator[Op]:
        """``process_customers``: one counterparty, skipped / error / created / updated."""
        stats["total"] += 1
        stats["attributes_block_present" if cp.has_attributes else "attributes_block_missing"] += 1
        if "покупатель" not in {p.strip().casefold() for p in cp.onec_role.split(",")}:
            stats["skipped"] += 1
            details: dict[str, Any] = {"reason": "not_buyer", "role": cp.onec_role}
            yield self._row(cp.onec_id, session, "skipped", "success", details=details)
            return
        if self.rng.random() < self.state.error_rate():
            stats["errors"] += 1
            error = self.rng.choice(PROCESSOR_ERRORS).format(email=cp.email or "-")
            yield self._row(cp.onec_id, session, "error", "failed", error=error)
            return
        if "@@" in cp.email:
            stats["errors"] += 1
            error = f"Невалидный формат email: {cp.email}"
            yield self._row(cp.onec_id, session, "error", "failed", error=error)
            if self.rng.random() < 0.3:  # a manager fixes the card in 1C
                cp.email = cp.email.replace("@@", "@")
            return
        if cp.customer is None:
            stats["created"] += 1
            yield from self._create(cp, session)
        else:
            stats["updated"] += 1
            yield from self._update(cp, cp.customer, session, stats)

    def _create(self, cp: Counterparty, session: str) -> Iterator[Op]:
        user = yield from create_1c_customer(self.state, cp)
        details = {
            "role": IMPORTED_ROLE,
            "has_email": bool(cp.email),
            "customer_type": cp.customer_type,
        }
        yield self._row(
            cp.onec_id, session, "created", "success", details=details, customer=user.id
        )
        if not cp.email:
            details = {"notes": "Клиент создан без email адреса"}
            yield self._row(
                cp.onec_id, session, "created", "warning", details=details, customer=user.id
            )

    def _update(
        self, cp: Counterparty, user: Customer, session: str, stats: dict[str, Any]
    ) -> Iterator[Op]:
        outcome = self._role_outcome(cp)
        stats[outcome] += 1
        if outcome in ROLE_UPDATED:
            user.role = self.draw.pick(B2B_ROLES, (5, 3, 2, 1, 2, 1))
            yield UserUpdate(user.id, {"role": user.role, "last_sync_at": STAMP})
        details = {
            "role": user.role,
            "role_outcome": outcome,
            "role_preserved": outcome not in ROLE_UPDATED,
        }
        yield self._row(
            cp.onec_id, session, "updated", "success", details=details, customer=user.id
        )

    def _role_outcome(self, cp: Counterparty) -> str:
        assert cp.customer is not None
        if not cp.linked:
            return "roles_skipped_unlinked_record"
        if cp.customer.role == IMPORTED_ROLE:
            return "roles_updated_from_unregistered"
        return self.draw.pick(
            (
                "roles_already_actual", "roles_updated_from_assigned", "roles_skipped_no_data",
                "roles_skipped_no_agreement", "roles_skipped_unknown_price_type",
                "roles_skipped_ambiguous",
            ),
            (70, 6, 8, 8, 5, 3),
        )
