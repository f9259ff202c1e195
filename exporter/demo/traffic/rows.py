"""The row operations the traffic model emits, each knowing the table it lands in.

An operation is a plain value (what the simulated writer did); it renders its own ``COPY``
values for the row time the writer gives it, keyed by column name, so nothing downstream depends
on the order of a column list. ``STAMP`` inside values or ``details`` means "the time this row is
written", filled in at render time: the same operation can be written live (``now()``) or as
history (a given time).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar


class _Stamp:
    """Placeholder for "the time this row is written", filled in by the writer."""

    def __repr__(self) -> str:
        return "STAMP"


STAMP: Any = _Stamp()


def stamped(values: dict[str, Any], ts: datetime) -> dict[str, Any]:
    """``values`` with every ``STAMP`` replaced by the row time as ISO text (for JSON)."""
    return {k: (ts.isoformat() if v is STAMP else v) for k, v in values.items()}


def resolve(value: Any, ts: datetime) -> Any:
    """A column value with ``STAMP`` replaced by the row time."""
    return ts if value is STAMP else value


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass(slots=True)
class LogRow:
    """One ``common_customersynclog`` row; ``STAMP`` values in ``details`` become the row time."""

    TABLE: ClassVar[str] = "common_customersynclog"
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "onec_id", "operation_type", "status", "error_message", "details", "created_at",
        "session", "correlation_id", "customer_id", "duration_ms", "updated_at", "ip_address",
        "user_agent",
    )

    operation_type: str
    status: str
    correlation_id: uuid.UUID
    onec_id: str = ""
    error_message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    session: str = ""
    customer_id: int | None = None
    duration_ms: int | None = None

    def copy_values(self, ts: datetime) -> tuple[Any, ...]:
        """The row in ``COLUMNS`` order: the hot path of a bulk load, so a tuple, not a dict."""
        details = self.details
        if any(v is STAMP for v in details.values()):
            details = stamped(details, ts)
        return (
            self.onec_id, self.operation_type, self.status, self.error_message, _json(details),
            ts, self.session, self.correlation_id, self.customer_id, self.duration_ms, ts, None,
            "",
        )


@dataclass(slots=True)
class UserRow:
    """One ``users`` row, with every NOT NULL column filled the way Django would."""

    TABLE: ClassVar[str] = "users"
    COLUMNS: ClassVar[tuple[str, ...]]  # the keys of record(), set below

    id: int
    email: str | None
    role: str
    created_in_1c: bool
    password: str = ""
    first_name: str = ""
    last_name: str = ""
    phone: str = ""
    company_name: str = ""
    tax_id: str = ""
    is_active: bool = True
    is_verified: bool = False
    needs_1c_export: bool = False
    onec_id: str | None = None
    sync_status: str = "pending"
    verification_status: str = "unverified"
    country: str = "Россия"
    onec_price_type_id: str = ""
    synced: bool = False  # last_sync_at = the row time

    def record(self, ts: datetime) -> dict[str, Any]:
        """Every column of the row by name, in ``COLUMNS`` order."""
        return {
            "id": self.id, "password": self.password, "last_login": None, "is_superuser": False,
            "first_name": self.first_name, "last_name": self.last_name, "is_staff": False,
            "is_active": self.is_active, "date_joined": ts, "email": self.email,
            "role": self.role, "phone": self.phone, "company_name": self.company_name,
            "tax_id": self.tax_id, "is_verified": self.is_verified, "created_at": ts,
            "updated_at": ts, "created_in_1c": self.created_in_1c,
            "last_sync_at": ts if self.synced else None, "needs_1c_export": self.needs_1c_export,
            "onec_id": self.onec_id, "sync_error_message": "", "sync_status": self.sync_status,
            "onec_guid": None, "last_sync_from_1c": None,
            "verification_status": self.verification_status, "customer_code": None,
            "country": self.country, "onec_price_type_id": self.onec_price_type_id,
            "responsible_manager_id": None, "responsible_manager_manual": False,
        }


UserRow.COLUMNS = tuple(UserRow(0, None, "", False).record(datetime.min))


@dataclass(slots=True)
class UserUpdate:
    """``UPDATE users SET ...``; ``STAMP`` values become the row time, as does updated_at."""

    id: int
    values: dict[str, Any]

    def assignments(self, ts: datetime) -> dict[str, Any]:
        """The columns this update sets, updated_at last, with the row time filled in."""
        return {**{k: resolve(v, ts) for k, v in self.values.items()}, "updated_at": ts}

    def fold_into(self, record: dict[str, Any], ts: datetime) -> None:
        """Apply the update to a row not yet written (one INSERT instead of INSERT + UPDATE)."""
        for column, value in self.assignments(ts).items():
            if column not in record:
                raise KeyError(f"users has no column {column!r}")
            record[column] = value


@dataclass(slots=True)
class SessionRow:
    """An ``import_sessions`` row as the import view / command creates it."""

    TABLE: ClassVar[str] = "import_sessions"
    COLUMNS: ClassVar[tuple[str, ...]]  # the keys of record(), set below

    id: int
    import_type: str = "customers"
    status: str = "started"
    celery_task_id: str | None = None

    def record(self, ts: datetime) -> dict[str, Any]:
        """Every column of the row by name, in ``COLUMNS`` order."""
        return {
            "id": self.id, "import_type": self.import_type, "status": self.status,
            "started_at": ts, "finished_at": None, "report_details": "{}", "error_message": "",
            "celery_task_id": self.celery_task_id, "created_at": ts, "report": "",
            "updated_at": ts, "session_key": None,
        }


SessionRow.COLUMNS = tuple(SessionRow(0).record(datetime.min))


@dataclass(slots=True)
class SessionUpdate:
    """A status change of an import session; ``finished`` sets finished_at to the row time."""

    id: int
    status: str
    finished: bool = False
    report_details: dict[str, Any] | None = None
    error_message: str | None = None

    def fold_into(self, record: dict[str, Any], ts: datetime) -> None:
        """Apply the change to a session row not yet written."""
        record["status"] = self.status
        record["updated_at"] = ts
        if self.finished:
            record["finished_at"] = ts
        if self.report_details is not None:
            record["report_details"] = _json(self.report_details)
        if self.error_message is not None:
            record["error_message"] = self.error_message

    def update_params(self, ts: datetime) -> tuple[Any, ...]:
        """Parameters of ``SESSION_UPDATE`` for a session already in the table."""
        report = _json(self.report_details) if self.report_details is not None else None
        return (self.status, ts, self.finished, ts, report, self.error_message, self.id)


SESSION_UPDATE = (
    "UPDATE import_sessions SET status = %s, updated_at = %s,"
    " finished_at = CASE WHEN %s THEN %s ELSE finished_at END,"
    " report_details = COALESCE(%s::jsonb, report_details),"
    " error_message = COALESCE(%s, error_message) WHERE id = %s"
)


@dataclass(slots=True)
class ConflictRow:
    """One ``common_syncconflict`` row as ``CustomerConflictResolver`` writes it."""

    TABLE: ClassVar[str] = "common_syncconflict"
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "conflict_type", "resolution_strategy", "is_resolved", "resolved_at", "created_at",
        "customer_id", "details", "updated_at",
    )

    conflict_type: str
    customer_id: int | None
    details: dict[str, Any]
    resolution_strategy: str = "onec_wins"
    is_resolved: bool = True

    def copy_values(self, ts: datetime) -> tuple[Any, ...]:
        """The row in ``COLUMNS`` order."""
        return (
            self.conflict_type, self.resolution_strategy, self.is_resolved,
            ts if self.is_resolved else None, ts, self.customer_id,
            _json(stamped(self.details, ts)), ts,
        )


Op = LogRow | UserRow | UserUpdate | SessionRow | SessionUpdate | ConflictRow
