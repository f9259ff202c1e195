"""The start-up pass: the whole sync log read once, in one repeatable-read snapshot.

Old rows are counted in SQL into a few label groups; the rows the windows need (those inside
the longest window) are streamed one by one; every id missing below the highest visible one is
a gap, since a transaction in flight during the pass may hold it. If the gaps need more ranges
than the limit, the pass stops short of the first hole that does not fit and the tail reads on
from there as the holes are settled. The pass runs on its own connection, outside the pool and
without a statement timeout (it takes seconds at 10M rows); closing the tail cancels it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import psycopg

from collectors.gaps import GapSet
from collectors.logrows import Group, RowReader
from collectors.logsql import GroupRecord, Statements, from_epoch_us
from collectors.windows import Row
from exporter.collector import CollectorError, Reason
from exporter.db import Database

WARMUP_BATCH = 20_000


class StartupSink(Protocol):
    """The tail, as the pass sees it; every call but ``gap_limit_reached`` takes its lock."""

    def restart(self) -> None:
        """Forget everything read so far: the pass counts from the start."""

    def deliver(self, groups: list[Group], rows: list[Row],
                unusable: Counter[str] | None = None) -> None: ...

    def gap_limit_reached(self, stop_at: int | None = None) -> CollectorError: ...


@dataclass(frozen=True)
class Started:
    """Where the pass left the table: the tail polls on from here."""

    cursor: int  # the highest id the pass read up to
    filenode: int | None
    gaps: GapSet
    now_us: int


@dataclass
class StartupPass:
    """One pass over the table; :meth:`run` delivers to ``sink`` as it reads."""

    db: Database
    sql: Statements
    reader: RowReader
    sink: StartupSink
    longest_window_us: int
    max_gap_ranges: int
    now_us: Callable[[int], int]  # the time source, given PostgreSQL's now()
    monotonic: Callable[[], float]  # when a gap was seen, for settling it
    _conn: psycopg.Connection[Any] | None = field(default=None, init=False)
    _cancelled: threading.Event = field(default_factory=threading.Event, init=False)

    def run(self) -> Started:
        with self.db.connect_direct() as conn:
            self._conn = conn
            try:
                return self._read(conn)
            finally:
                self._conn = None

    def cancel(self) -> None:
        """Stop the pass from another thread: its query is cancelled in PostgreSQL."""
        self._cancelled.set()
        conn = self._conn
        if conn is not None:
            conn.cancel_safe(timeout=2)

    def _read(self, conn: psycopg.Connection[Any]) -> Started:
        self._check_cancelled()  # closed before the connection was there to cancel
        conn.autocommit = False
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute("SET LOCAL statement_timeout = 0")
        info = self.sql.info.one(conn)
        detected = self.monotonic()  # every invisible id below max_id is invisible now
        now = self.now_us(info.now_us)
        cutoff = from_epoch_us(now - self.longest_window_us)
        self.sink.restart()
        gaps = GapSet(self.max_gap_ranges)
        records, hi = self._groups(conn, info.max_id or 0, cutoff, gaps, detected)
        unusable: Counter[str] = Counter()
        self.sink.deliver(self.reader.grouped(records, unusable), [], unusable)
        lowest_recent = min((r.lowest_recent_id for r in records
                             if r.lowest_recent_id is not None), default=None)
        if lowest_recent is not None:
            recent = self.sql.warmup_recent.batches(
                conn, {"lo": lowest_recent, "hi": hi, "cutoff": cutoff},
                name="customer_sync_warmup", size=WARMUP_BATCH)
            with closing(recent):
                for batch in recent:
                    self._check_cancelled()
                    self.sink.deliver([], self.reader.recent(batch))
        conn.rollback()
        return Started(cursor=hi, filenode=info.filenode, gaps=gaps, now_us=now)

    def _groups(self, conn: psycopg.Connection[Any], hi: int, cutoff: datetime, gaps: GapSet,
                detected: float) -> tuple[Sequence[GroupRecord], int]:
        """Count every row up to ``hi`` into groups and track the ids missing below it. If they
        need more ranges than the limit, the pass stops short of the first hole that does not
        fit (the tail reads on from there) and counts again up to it. Returns the groups and
        the id the pass read up to."""
        records = self.sql.warmup_groups.all(conn, {"cutoff": cutoff, "hi": hi})
        first = min((r.lowest_id for r in records), default=None)
        if first is not None and sum(r.rows for r in records) != hi - first + 1:
            stop = self._holes(conn, hi, first, gaps, detected)
            if stop is not None:
                hi = stop
                records = self.sql.warmup_groups.all(conn, {"cutoff": cutoff, "hi": hi})
        elif first is not None and first > 1:
            gaps.add(1, first - 1, detected)  # rows deleted, or in flight, before the first
        return records, hi

    def _holes(self, conn: psycopg.Connection[Any], hi: int, first: int, gaps: GapSet,
               detected: float) -> int | None:
        """Track the ids missing between visible rows up to ``hi``; at the range limit, the id
        to stop the pass at (the last visible one below the first hole that did not fit)."""
        if first > 1:
            gaps.add(1, first - 1, detected)
        holes = self.sql.warmup_holes.batches(conn, {"hi": hi}, name="customer_sync_holes",
                                              size=WARMUP_BATCH)
        with closing(holes):
            for batch in holes:
                self._check_cancelled()
                for hole in batch:
                    if not gaps.add(hole.lo, hole.hi, detected):
                        self.sink.gap_limit_reached(stop_at=hole.lo - 1)
                        return hole.lo - 1
        return None

    def _check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise CollectorError(Reason.INTERNAL, "the start-up pass was cancelled: closed")
