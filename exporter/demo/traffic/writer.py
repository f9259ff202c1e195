"""Writing operations: a batch per transaction, ``COPY`` for inserts, ``executemany`` for updates.

Log rows stream into a ``COPY`` while the operations are still being generated: the copy goes
through a queued writer, so generating rows (Python) and storing them (PostgreSQL) overlap.
Users and sessions are buffered, so an update of a row inserted in the same batch is folded into
the insert and a bulk load issues few UPDATEs. The foreign keys are DEFERRABLE INITIALLY
DEFERRED, so log rows may precede the users they reference within the transaction.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from exporter.demo.traffic import rows


@dataclass
class WriteStats:
    """What one batch wrote, per table."""

    log_rows: int = 0
    users: int = 0
    user_updates: int = 0
    sessions: int = 0
    session_updates: int = 0
    conflicts: int = 0
    log_by_type: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, other: WriteStats) -> None:
        for name in ("log_rows", "users", "user_updates", "sessions", "session_updates",
                     "conflicts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.log_by_type.update(other.log_by_type)


def write_ops(
    conn: psycopg.Connection[Any], ops: Sequence[rows.Op], times: Sequence[datetime] | None = None
) -> WriteStats:
    """Write ``ops`` in one transaction: COPY for inserts, executemany for updates.

    ``times`` gives each op its timestamp (history); without it every row gets the database's
    ``now()`` of this transaction, like live rows.
    """
    with conn.transaction():
        if times is None:
            row = conn.execute("SELECT now()").fetchone()
            assert row is not None
            return write_stream(conn, zip(ops, itertools.repeat(row[0])))
        return write_stream(conn, zip(ops, times, strict=True))


def write_stream(
    conn: psycopg.Connection[Any], pairs: Iterable[tuple[rows.Op, datetime]]
) -> WriteStats:
    """Stream the log rows of ``pairs`` into COPY as they are produced, then write the rest.

    Runs inside the caller's transaction.
    """
    with conn.cursor() as cur:
        log_copy = cur.copy(
            _copy_sql(rows.LogRow.TABLE, rows.LogRow.COLUMNS), writer=QueuedLibpqWriter(cur)
        )
        with log_copy as copy:
            batch = _Batch(copy.write_row)
            add = batch.add
            for op, ts in pairs:
                add(op, ts)
        return batch.flush(cur)


class _Batch:
    """The rows of one batch on their way in: one handler per operation type."""

    def __init__(self, write_log: Callable[[tuple[Any, ...]], None]) -> None:
        self.stats = WriteStats()
        self._write_log = write_log
        self._users: dict[int, dict[str, Any]] = {}
        self._sessions: dict[int, dict[str, Any]] = {}
        self._user_updates: list[tuple[rows.UserUpdate, datetime]] = []
        self._session_updates: list[tuple[rows.SessionUpdate, datetime]] = []
        self._conflicts: list[tuple[Any, ...]] = []
        self._handlers: dict[type, Callable[[Any, datetime], None]] = {
            rows.LogRow: self._log,
            rows.UserRow: self._user,
            rows.UserUpdate: self._user_update,
            rows.SessionRow: self._session,
            rows.SessionUpdate: self._session_update,
            rows.ConflictRow: self._conflict,
        }

    def add(self, op: rows.Op, ts: datetime) -> None:
        handler = self._handlers.get(type(op))
        if handler is None:
            raise TypeError(f"not a traffic operation: {op!r}")
        handler(op, ts)

    def _log(self, op: rows.LogRow, ts: datetime) -> None:
        self._write_log(op.copy_values(ts))
        self.stats.log_by_type[(op.operation_type, op.status)] += 1
        self.stats.log_rows += 1

    def _user(self, op: rows.UserRow, ts: datetime) -> None:
        self._users[op.id] = op.record(ts)

    def _user_update(self, op: rows.UserUpdate, ts: datetime) -> None:
        _fold_or_queue(op, ts, self._users, self._user_updates)

    def _session(self, op: rows.SessionRow, ts: datetime) -> None:
        self._sessions[op.id] = op.record(ts)

    def _session_update(self, op: rows.SessionUpdate, ts: datetime) -> None:
        _fold_or_queue(op, ts, self._sessions, self._session_updates)

    def _conflict(self, op: rows.ConflictRow, ts: datetime) -> None:
        self._conflicts.append(op.copy_values(ts))

    def flush(self, cur: psycopg.Cursor[Any]) -> WriteStats:
        """Write what was buffered: inserts first, then the updates of older rows."""
        _copy(cur, rows.UserRow.TABLE, rows.UserRow.COLUMNS, _values(self._users))
        _copy(cur, rows.SessionRow.TABLE, rows.SessionRow.COLUMNS, _values(self._sessions))
        _update_users(cur, self._user_updates)
        if self._session_updates:
            cur.executemany(
                rows.SESSION_UPDATE, [op.update_params(ts) for op, ts in self._session_updates]
            )
        _copy(cur, rows.ConflictRow.TABLE, rows.ConflictRow.COLUMNS, self._conflicts)
        stats = self.stats
        stats.users, stats.sessions = len(self._users), len(self._sessions)
        stats.user_updates = len(self._user_updates)
        stats.session_updates = len(self._session_updates)
        stats.conflicts = len(self._conflicts)
        return stats


def _fold_or_queue(
    op: rows.UserUpdate | rows.SessionUpdate, ts: datetime, inserts: dict[int, dict[str, Any]],
    updates: list[Any],
) -> None:
    """Fold an update into a row this batch inserts; queue it for an UPDATE otherwise."""
    if op.id in inserts:
        op.fold_into(inserts[op.id], ts)
    else:
        updates.append((op, ts))


def _values(records: dict[int, dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Buffered rows as COPY tuples; each record's keys are its table's ``COLUMNS``."""
    return [tuple(record.values()) for record in records.values()]


def _copy_sql(table: str, columns: Sequence[str]) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )


def _copy(
    cur: psycopg.Cursor[Any], table: str, columns: Sequence[str], values: list[tuple[Any, ...]]
) -> None:
    if not values:
        return
    with cur.copy(_copy_sql(table, columns)) as copy:
        for row in values:
            copy.write_row(row)


def _update_users(
    cur: psycopg.Cursor[Any], updates: list[tuple[rows.UserUpdate, datetime]]
) -> None:
    """One ``executemany`` per set of updated columns.

    A user's updates are merged in order first: grouping them by column set would otherwise run
    a later update before an earlier one and leave the older ``updated_at`` in the row.
    """
    merged: dict[int, dict[str, Any]] = {}
    for op, ts in updates:
        merged.setdefault(op.id, {}).update(op.assignments(ts))
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for uid, assignments in merged.items():
        groups.setdefault(tuple(assignments), []).append((*assignments.values(), uid))
    for columns, params in groups.items():
        setters = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in columns)
        cur.executemany(sql.SQL("UPDATE users SET {} WHERE id = %s").format(setters), params)
