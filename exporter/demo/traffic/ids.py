"""Where the model's user and import-session ids come from.

Unique values (user ids, 1C GUIDs, e-mails) embed numbers drawn from the database's own
sequences, so a restarted demo never collides with what an earlier run wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import psycopg


class IdSource(Protocol):
    """Where user and import-session ids come from (the database sequences, or a counter)."""

    def next_user_id(self) -> int: ...

    def next_session_id(self) -> int: ...


class CountingIds:
    """Ids from plain counters: for a model that never meets a database."""

    def __init__(self, user: int = 1, session: int = 1) -> None:
        self._user = user
        self._session = session

    def next_user_id(self) -> int:
        self._user += 1
        return self._user - 1

    def next_session_id(self) -> int:
        self._session += 1
        return self._session - 1


class SequenceIds:
    """Ids drawn from the tables' identity sequences in chunks, as Django's INSERT would.

    ``reserve`` fetches ahead, so generating a batch needs no database round trip (and cannot
    fail half-way because the database went away).
    """

    def __init__(self, conn: Callable[[], psycopg.Connection[Any]], chunk: int = 256) -> None:
        self.conn = conn
        self.chunk = chunk
        self._pools: dict[str, list[int]] = {"users": [], "import_sessions": []}

    def reserve(self, users: int, sessions: int) -> None:
        for table, want in (("users", users), ("import_sessions", sessions)):
            missing = want - len(self._pools[table])
            if missing > 0:
                self._fetch(table, max(missing, self.chunk if table == "users" else 8))

    def _fetch(self, table: str, count: int) -> None:
        rows = self.conn().execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            (table, count),
        ).fetchall()
        # Popped from the end: keep the smallest id last so ids are used in ascending order.
        self._pools[table] = sorted((int(r[0]) for r in rows), reverse=True) + self._pools[table]

    def _next(self, table: str) -> int:
        if not self._pools[table]:
            self._fetch(table, self.chunk if table == "users" else 8)
        return self._pools[table].pop()

    def next_user_id(self) -> int:
        return self._next("users")

    def next_session_id(self) -> int:
        return self._next("import_sessions")
