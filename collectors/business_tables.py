"""What the business collector reads from users, common_syncconflict and import_sessions: one
SELECT, riding the sync-log tail's poll (:class:`collectors.logtail.Rider`) or alone.

``users`` and ``common_syncconflict`` are recounted only when PostgreSQL's per-table activity
counters (inserts, updates, deletes) or the relation's file node (which TRUNCATE replaces) moved
since the last read, or after ``max_age`` seconds in case statistics are off. PostgreSQL decides
that in the same statement (the counters we saw are parameters), so a quiet scrape reads the
counters and ``import_sessions`` (small, read every time) and nothing else. Multi-row answers
travel as JSON arrays: text, booleans, integers and shortest-exact floats survive it unchanged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from psycopg import sql

from collectors.logsql import NOW_US, Rendered, epoch_us, from_epoch_us, usable_ts
from exporter.collector import Deadline
from exporter.config import BusinessConfig
from exporter.db import Database

# The activity counters (pg_stat_user_tables' n_tup_ins, n_tup_upd, n_tup_del: the same
# functions, without the view's joins) and the file node of one table; NULL for a relation
# without storage of its own (a view, a partitioned table), which is then read every time.
_KEY = """(SELECT CASE WHEN pg_relation_filenode(r) IS NOT NULL
                       THEN ARRAY[pg_stat_get_tuples_inserted(r), pg_stat_get_tuples_updated(r),
                                  pg_stat_get_tuples_deleted(r), pg_relation_filenode(r)::int8]
                  END
             FROM CAST({} AS regclass) AS r)"""

_PART = f"""
SELECT k.conflicts_key,
       CASE WHEN %(b_conflicts_due)s OR k.conflicts_key IS NULL
                 OR k.conflicts_key IS DISTINCT FROM %(b_conflicts_seen)s::int8[]
            THEN (SELECT coalesce(json_agg(json_build_array(conflict_type, resolution_strategy,
                                                            is_resolved, n)), '[]')
                    FROM (SELECT conflict_type, resolution_strategy, is_resolved, count(*) AS n
                            FROM {{conflicts}} GROUP BY 1, 2, 3) AS c)
       END AS conflicts,
       k.users_key,
       CASE WHEN %(b_users_due)s OR k.users_key IS NULL
                 OR k.users_key IS DISTINCT FROM %(b_users_seen)s::int8[]
            THEN json_build_array(
                (SELECT coalesce(json_agg(json_build_array(created_in_1c, role, n, export)), '[]')
                   FROM (SELECT created_in_1c, role, count(*) AS n,
                                count(*) FILTER (WHERE needs_1c_export AND is_active) AS export
                           FROM {{users}} GROUP BY 1, 2) AS u),
                (SELECT coalesce(json_agg(json_build_array(created_in_1c,
                                                           {epoch_us('created_at')})), '[]')
                   FROM {{users}}
                  WHERE created_at > coalesce(%(b_since)s, now() - %(b_longest)s::interval)
                    AND {usable_ts('created_at')}),
                (SELECT {epoch_us('min(updated_at)')} FROM {{users}}
                  WHERE needs_1c_export AND is_active))
       END AS users,
       (SELECT coalesce(json_agg(json_build_array(import_type, status, n, last)), '[]')
          FROM (SELECT import_type, status, count(*) AS n,
                       extract(epoch FROM max(finished_at) FILTER (WHERE isfinite(finished_at))
                              )::float8 AS last
                  FROM {{imports}} GROUP BY 1, 2) AS s) AS imports
  FROM (SELECT {_KEY.format('{conflicts_name}')} AS conflicts_key,
               {_KEY.format('{users_name}')} AS users_key) AS k"""


def _ident(table: str) -> sql.Identifier:
    return sql.Identifier(*table.split("."))


class _Gate:
    """The activity counters last seen for one table, and when it was last read."""

    def __init__(self, max_age: float, monotonic: Callable[[], float]) -> None:
        self.max_age = max_age
        self.monotonic = monotonic
        self.key: list[int] | None = None
        self.read_at: float | None = None

    def due(self) -> bool:
        return self.read_at is None or self.monotonic() - self.read_at > self.max_age

    def seen(self, key: list[int] | None, read: bool) -> None:
        self.key = key
        if read:
            self.read_at = self.monotonic()


class TableReads:
    """The three tables' rows as last read, and the statement that brings them up to date."""

    columns = 5

    def __init__(self, config: BusinessConfig, *, longest_window_us: int, max_age: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.part_sql = sql.SQL(_PART).format(
            conflicts=_ident(config.conflicts_table), users=_ident(config.users_table),
            imports=_ident(config.import_sessions_table),
            conflicts_name=sql.Literal(config.conflicts_table),
            users_name=sql.Literal(config.users_table))
        self.alone_sql = Rendered(sql.SQL("SELECT {now} AS now_us, b.* FROM ({part}) AS b")
                                  .format(now=sql.SQL(NOW_US), part=self.part_sql))
        self.longest = timedelta(microseconds=longest_window_us)
        self.conflicts_gate = _Gate(max_age, monotonic)
        self.users_gate = _Gate(max_age, monotonic)
        self.lock = threading.Lock()
        self._riding = True  # until a ride fails; again after a scrape read alone went well
        self.served_for: Deadline | None = None
        self.now_us = 0
        self.conflict_rows: list[list[Any]] = []
        self.user_rows: list[list[Any]] = []
        # created_at (Unix us, sorted) of users created since the read, by created_in_1c
        self.created_us: dict[bool, list[int]] = {True: [], False: []}
        self.export_oldest_us: int | None = None
        self.import_rows: list[list[Any]] = []

    # --- collectors.logtail.Rider --------------------------------------------------------------

    @property
    def riding(self) -> bool:
        return self._riding

    def part(self, now_us: int | None) -> tuple[sql.Composable, dict[str, Any]]:
        """Recent users are read from ``now_us`` (the tail's time before the poll) minus the
        longest window: the poll's time is no earlier, so none it needs is left out."""
        with self.lock:
            return self.part_sql, self._params(None if now_us is None else from_epoch_us(
                now_us - int(self.longest.total_seconds() * 1_000_000)))

    def take(self, values: tuple[Any, ...], now_us: int, deadline: Deadline) -> None:
        with self.lock:
            self._take(values, now_us)
            self.served_for = deadline

    def missed(self) -> None:
        with self.lock:
            self._riding = False

    # --- alone -------------------------------------------------------------------------------

    def read_alone(self, db: Database, deadline: Deadline,
                   clock_us: Callable[[], int] | None) -> None:
        """One statement of its own; ``clock_us`` is the windows' clock (None: PostgreSQL's)."""
        since = None
        if clock_us is not None:
            since = from_epoch_us(clock_us() - int(self.longest.total_seconds() * 1_000_000))
        with self.lock:
            params = self._params(since)
        with db.connection(deadline) as conn:
            row = conn.execute(self.alone_sql(conn), params).fetchone()
        assert row is not None
        with self.lock:
            self._take(tuple(row[1:]), clock_us() if clock_us is not None else int(row[0]))
            self.served_for = deadline

    def ride_again(self) -> None:
        with self.lock:
            self._riding = True

    # --- state -------------------------------------------------------------------------------

    def _params(self, since: Any) -> dict[str, Any]:
        return {
            "b_conflicts_due": self.conflicts_gate.due(),
            "b_conflicts_seen": self.conflicts_gate.key,
            "b_users_due": self.users_gate.due(),
            "b_users_seen": self.users_gate.key,
            "b_since": since,
            "b_longest": self.longest,
        }

    def _take(self, values: tuple[Any, ...], now_us: int) -> None:
        conflicts_key, conflicts, users_key, users, imports = values
        self.now_us = now_us
        self.conflicts_gate.seen(conflicts_key, conflicts is not None)
        if conflicts is not None:
            self.conflict_rows = conflicts
        self.users_gate.seen(users_key, users is not None)
        if users is not None:
            self.user_rows, recent, oldest = users
            created: dict[bool, list[int]] = {True: [], False: []}
            for in_1c, created_us in recent:
                created[bool(in_1c)].append(int(created_us))
            for times in created.values():
                times.sort()
            self.created_us = created
            self.export_oldest_us = None if oldest is None else int(oldest)
        self.import_rows = imports
