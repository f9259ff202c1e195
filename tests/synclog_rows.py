"""Writing sync-log rows and reading exported samples, shared by the collector tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from prometheus_client.core import Metric

from collectors.synclog import SyncLogCollector
from collectors.synclog_source import SyncLogSource
from exporter.config import SyncLogConfig
from exporter.db import Database

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOW = 1_795_000_000.0  # a fixed "now" the collector tests move by hand (Unix seconds)


class Clock:
    """An injectable clock for the collectors, so SQL ground truth can use the very same now."""

    def __init__(self, start: float = NOW) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def synclog_collector(db: Database, config: SyncLogConfig | None = None,
                      **source: Any) -> SyncLogCollector:
    """A synclog collector on a source of its own (``source``: the source's seams)."""
    config = config or SyncLogConfig()
    return SyncLogCollector(config, source=SyncLogSource(db, config, **source))


def ts(seconds: float) -> datetime:
    return EPOCH + timedelta(microseconds=round(seconds * 1_000_000))


@dataclass
class LogRow:
    operation_type: str
    status: str
    created_at: datetime
    duration_ms: int | None = None
    customer_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    session: str = ""
    error_message: str = ""


INSERT = (
    "INSERT INTO {table} (onec_id, operation_type, status, error_message, details, created_at,"
    " session, correlation_id, customer_id, duration_ms, updated_at, user_agent)"
    " VALUES ('', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '')"
)


def insert_rows(
    conn: psycopg.Connection[Any], rows: Iterable[LogRow], table: str = "common_customersynclog"
) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            INSERT.format(table=table),
            [
                (r.operation_type, r.status, r.error_message, json.dumps(r.details), r.created_at,
                 r.session, uuid.uuid4(), r.customer_id, r.duration_ms, r.created_at)
                for r in rows
            ],
        )


def insert_users(conn: psycopg.Connection[Any], n: int, *, created_in_1c: bool = False,
                 role: str = "retail", needs_export: bool = False, active: bool = True,
                 created_at: datetime | None = None) -> list[int]:
    """Users with every NOT NULL column filled the way Django would."""
    ids = []
    for _ in range(n):
        row = conn.execute(
            "INSERT INTO users (password, is_superuser, first_name, last_name, is_staff, is_active,"
            " date_joined, email, role, phone, company_name, tax_id, is_verified, created_at,"
            " updated_at, created_in_1c, needs_1c_export, sync_error_message, sync_status,"
            " verification_status, country, onec_price_type_id, responsible_manager_manual)"
            " VALUES (%s, false, '', '', false, %s, now(), NULL, %s, '', '', '', false,"
            " coalesce(%s, now()), now(), %s, %s, '', 'pending', 'unverified', 'Россия', '', false)"
            " RETURNING id",
            ("" if created_in_1c else "pbkdf2$x", active, role, created_at, created_in_1c,
             needs_export),
        ).fetchone()
        assert row is not None
        ids.append(row[0])
    return ids


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(families: Iterable[Metric]) -> Samples:
    out: Samples = {}
    for family in families:
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def pick(data: Samples, name: str, /, **fixed: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one metric whose labels include ``fixed``, keyed by the remaining labels."""
    out = {}
    for (n, labels), value in data.items():
        if n != name:
            continue
        d = dict(labels)
        if all(d.get(k) == v for k, v in fixed.items()):
            out[tuple((k, v) for k, v in labels if k not in fixed)] = value
    return out
