"""(c) ``CustomerSyncLogger``: one correlation id per logger instance, durations set (DATA.md §3.2).

FREESPORT has the logger but no production caller; the demo runs it the way a caller would, so
the exporter's duration histograms, batch summaries, identification and validation metrics have
rows to count. Each run (an import, an export, a registration check, a validation pass) is one
logger instance: every row it writes shares its correlation id, and most runs end with a
``batch_operation`` summary.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar

from exporter.demo.traffic.importer import create_1c_customer
from exporter.demo.traffic.rows import STAMP, LogRow, Op, UserUpdate
from exporter.demo.traffic.state import Counterparty, Customer, Writer
from exporter.demo.traffic.values import OUTAGE_ERRORS, PROCESSOR_ERRORS

T = TypeVar("T")
EXPORT_ERROR = (
    "500 Server Error: Internal Server Error for url: "
    "http://1c.freesport.local/base/hs/exchange/customers"
)


class SyncLogger(Writer):
    """The logger runs; ``run_*`` methods are the side activities the model interleaves."""

    # -- the rows --

    def _row(
        self, corr: uuid.UUID, op: str, status: str, duration: int, *, onec_id: str = "",
        customer: int | None = None, details: dict[str, Any], error: str = "",
    ) -> LogRow:
        return LogRow(
            op, status, corr, onec_id=onec_id, error_message=error, details=details,
            session="", customer_id=customer, duration_ms=duration,
        )

    def _customer_row(
        self, corr: uuid.UUID, op: str, user: Customer, details: dict[str, Any], duration: int,
        error: str | None,
    ) -> LogRow:
        """A row about one customer: success, or error with ``error`` as its message."""
        return self._row(
            corr, op, "error" if error else "success", duration, onec_id=user.onec_id or "",
            customer=user.id, details=details, error=error or "",
        )

    def identify_row(self, corr: uuid.UUID, cp: Counterparty | None) -> LogRow:
        """``log_customer_identification``: search_method/found; not found is status skipped."""
        user = cp.customer if cp is not None else None
        options = ["onec_id", "tax_id", "email"]
        if user is not None and user.onec_guid is not None:
            options.append("onec_guid")
        method: str | None = None
        if user is not None and self.rng.random() < 0.85:
            method = self.draw.pick(options, (6, 2, 2, 4)[: len(options)])
            if (method == "tax_id" and not user.tax_id) or (method == "email" and not user.email):
                method = "onec_id"
        value: str | None
        normalized: str | None
        if method == "onec_id" and cp is not None:
            value = normalized = cp.onec_id
        elif method == "onec_guid" and user is not None:
            value = normalized = str(user.onec_guid)
        elif method == "tax_id" and user is not None:
            normalized = user.tax_id
            value = f"{normalized[:4]} {normalized[4:]}"
        elif method == "email" and user is not None and user.email:
            normalized = user.email
            value = f" {user.email.upper()} "
        else:
            method, value, normalized, user = None, None, None, None
        found = user is not None
        details = {
            "search_method": method,
            "search_value": value,
            "normalized_value": normalized,
            "found": found,
            "customer_id": user.id if user else None,
        }
        return self._row(
            corr, "customer_identification", "success" if found else "skipped", self.draw.ms(8),
            onec_id=cp.onec_id if cp else "", customer=user.id if user else None,
            details=details,
        )

    def _batch_row(
        self, corr: uuid.UUID, name: str, ok: int, failed: int, duration: int
    ) -> LogRow:
        total = ok + failed
        status = "success" if failed == 0 else ("error" if ok == 0 else "warning")
        details = {
            "operation_name": name,
            "total_count": total,
            "success_count": ok,
            "error_count": failed,
            "success_rate": round(ok / total * 100, 2) if total > 0 else 0,
            "timestamp": STAMP,
        }
        error = f"{failed} ошибок из {total}" if failed > 0 else ""
        return self._row(corr, "batch_operation", status, duration, details=details, error=error)

    def _validation_row(self, corr: uuid.UUID, cp: Counterparty) -> tuple[LogRow, bool]:
        errors: list[str] = []
        warnings: list[str] = []
        if "@@" in cp.email:
            errors.append(f"Невалидный формат email: {cp.email}")
        if not cp.email:
            warnings.append("Отсутствует email")
        if cp.customer_type != "individual" and self.rng.random() < 0.05:
            errors.append(f"Некорректный ИНН: {cp.tax_id[:5]}")
        valid = not errors
        details = {
            "validation_timestamp": STAMP,
            "customer_email": cp.email,
            "is_valid": valid,
            "errors": errors,
            "warnings": warnings,
            "validated_fields": ["email", "tax_id", "phone", "company_name"],
        }
        row = self._row(
            corr, "data_validation", "success" if valid else "error", self.draw.ms(3),
            onec_id=cp.onec_id, details=details, error="; ".join(errors),
        )
        return row, valid

    def _import_row(
        self, corr: uuid.UUID, cp: Counterparty, success: bool, created: bool
    ) -> LogRow:
        user = cp.customer
        data = {"id": cp.onec_id, "customer_type": cp.customer_type, "name": cp.name,
                "email": cp.email, "tax_id": cp.tax_id, "phone": cp.phone}
        details: dict[str, Any] = {
            "source": "1c_export",
            "import_timestamp": STAMP,
            "onec_customer_id": cp.onec_id,
            "customer_type": cp.customer_type,
            "data_fields": list(data),
        }
        if success and user is not None:
            details.update(
                {"platform_customer_id": user.id, "assigned_role": user.role,
                 "created_new": created}
            )
        outage = self.state.outage
        duration = self.draw.ms(120, 0.8) if not outage else self.draw.ms(8000, 0.4)
        error = "" if success else self.rng.choice(OUTAGE_ERRORS if outage
                                                   else PROCESSOR_ERRORS[1:])
        return self._row(
            corr, "import_from_1c", "success" if success else "error", duration,
            onec_id=cp.onec_id, customer=user.id if success and user else None,
            details=details, error=error,
        )

    def conflict(self, corr: uuid.UUID, user: Customer, source: str) -> Generator[Op, None, int]:
        """``log_conflict_resolution`` as a caller would wire it (email_sent may be true)."""
        fields = self.rng.sample(["first_name", "last_name", "phone", "company_name"], 2)
        success = self.rng.random() >= 0.05
        changes = {f: {"old": "…", "new": "…"} for f in fields} if source == "data_import" else {}
        details = {
            "conflict_source": source,
            "resolution_strategy": "onec_wins",
            "conflicting_fields": fields,
            "changes_made": changes,
            "action": (
                ("data_updated" if source == "data_import" else "verified_client")
                if success else None
            ),
            "email_sent": success and self.rng.random() < 0.7,
            "sync_conflict_id": None,
        }
        row = self._customer_row(
            corr, "conflict_resolution", user, details, self.draw.ms(60),
            None if success else "could not serialize access due to concurrent update",
        )
        yield row
        return row.duration_ms or 0

    def _sync_changes(self, corr: uuid.UUID, user: Customer) -> Generator[Op, None, int]:
        success = self.rng.random() >= 0.03
        field_name = self.rng.choice(["phone", "company_name", "tax_id"])
        details = {
            "changes": {field_name: {"old": "…", "new": "…"}},
            "timestamp": STAMP,
            "customer_id": user.id,
        }
        row = self._customer_row(
            corr, "sync_changes", user, details, self.draw.ms(25),
            None if success else "canceling statement due to statement timeout",
        )
        yield row
        return row.duration_ms or 0

    # -- the runs --

    def _batch(
        self, corr: uuid.UUID, name: str, overhead_ms: int, items: Sequence[T],
        one: Callable[[uuid.UUID, T], Generator[Op, None, tuple[bool, int]]],
    ) -> Iterator[Op]:
        """One logger run over ``items``, closed by its ``batch_operation`` summary."""
        ok = failed = total_ms = 0
        for item in items:
            done, spent = yield from one(corr, item)
            ok, failed, total_ms = ok + done, failed + (not done), total_ms + spent
        yield self._batch_row(corr, name, ok, failed, total_ms + overhead_ms)

    def run_import(self) -> Iterator[Op]:
        """A logger run importing a few counterparties: validate, identify, import, sync."""
        corr = self.draw.uuid4()
        parties = self.state.sample_catalog(self.rng.randint(3, 10))
        yield from self._batch(corr, "import_customers_from_1c", 40, parties, self._import_one)

    def _import_one(
        self, corr: uuid.UUID, cp: Counterparty
    ) -> Generator[Op, None, tuple[bool, int]]:
        """One counterparty of an import run: (imported, milliseconds spent)."""
        total_ms = 0
        if self.rng.random() < 0.5:
            row, valid = self._validation_row(corr, cp)
            total_ms += row.duration_ms or 0
            yield row
            if not valid:
                return False, total_ms
        row = self.identify_row(corr, cp)
        total_ms += row.duration_ms or 0
        yield row
        success = not self.state.outage and self.rng.random() >= self.state.error_rate()
        created = False
        if success and cp.customer is None:
            created = True
            yield from create_1c_customer(self.state, cp)
        user = cp.customer
        row = self._import_row(corr, cp, success, created)
        total_ms += row.duration_ms or 0
        yield row
        if not success or user is None:
            return False, total_ms
        if not created and self.rng.random() < 0.15:
            total_ms += yield from self.conflict(corr, user, "data_import")
        if self.rng.random() < 0.5:
            total_ms += yield from self._sync_changes(corr, user)
        return True, total_ms

    def run_export(self) -> Iterator[Op]:
        """A logger run exporting queued portal customers to 1C; a success dequeues them."""
        corr = self.draw.uuid4()
        queue = list(itertools.islice(self.state.export_queue.values(), self.rng.randint(1, 6)))
        yield from self._batch(corr, "export_customers_to_1c", 25, queue, self._export_one)

    def _export_one(
        self, corr: uuid.UUID, user: Customer
    ) -> Generator[Op, None, tuple[bool, int]]:
        """One queued customer sent to 1C: (exported, milliseconds spent)."""
        fields = ["email", "first_name", "last_name", "phone", "company_name", "tax_id"]
        details: dict[str, Any] = {
            "destination": "1c_api",
            "export_timestamp": STAMP,
            "platform_customer_id": user.id,
            "customer_role": user.role,
            "export_format": "json",
            "exported_fields": fields,
        }
        outage = self.state.outage
        success = not outage and self.rng.random() >= 0.05
        error = ""
        if success:
            guid = self.draw.guid(user.id)
            details.update(
                {"assigned_1c_id": guid, "response_data": {"status": "created", "id": guid}}
            )
            duration = self.draw.ms(350, 0.6)
            user.needs_export = False
            self.state.export_queue.pop(user.id, None)
            user.onec_id = guid
            yield UserUpdate(
                user.id,
                {"needs_1c_export": False, "onec_id": guid, "sync_status": "synced",
                 "last_sync_at": STAMP},
            )
        else:
            duration = self.draw.ms(12000, 0.4) if outage else self.draw.ms(900)
            error = self.rng.choice(OUTAGE_ERRORS) if outage else EXPORT_ERROR
        yield self._row(
            corr, "export_to_1c", "success" if success else "error", duration,
            onec_id=user.onec_id or "", customer=user.id, details=details, error=error,
        )
        if success and self.rng.random() < 0.6:
            duration += yield from self._sync_changes(corr, user)
        return success, duration

    def run_identification(self) -> Iterator[Op]:
        """A registration check: one logger instance, 1-3 identification attempts."""
        corr = self.draw.uuid4()
        catalog, guided = self.state.catalog, self.state.guided
        for _ in range(self.rng.randint(1, 3)):
            known = bool(catalog) and self.rng.random() < 0.7
            cp = self.rng.choice(catalog) if known else None
            if known and guided and self.rng.random() < 0.2:
                cp = self.rng.choice(guided)  # a customer the resolver gave a GUID
            row = self.identify_row(corr, cp)
            yield row
            if cp is not None and cp.customer is not None and row.status == "success" and (
                self.rng.random() < 0.2
            ):  # a 1C customer registering on the portal
                yield from self.conflict(corr, cp.customer, "portal_registration")

    def run_validation(self) -> Iterator[Op]:
        """A validation pass over a few counterparties."""
        corr = self.draw.uuid4()
        parties = self.state.sample_catalog(self.rng.randint(3, 8))
        yield from self._batch(corr, "validate_customers", 5, parties, self._validate_one)

    def _validate_one(
        self, corr: uuid.UUID, cp: Counterparty
    ) -> Generator[Op, None, tuple[bool, int]]:
        row, valid = self._validation_row(corr, cp)
        yield row
        return valid, row.duration_ms or 0
