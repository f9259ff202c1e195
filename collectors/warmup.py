"""The start-up pass: the whole sync log read once, in one repeatable-read snapshot.

Old rows are counted in SQL into a few label groups; the rows the windows need (those inside
the longest window) are streamed one by one; every id missing below the highest visible one is
a gap, since a transaction in flight during the pass may hold it. If the gaps need more ranges
than the limit, the pass stops short of the first hole that does not fit and the tail reads on
from there as the holes are settled. The pass runs on its own connection, outside the pool and
without a statement timeout (it takes seconds at 10M rows); closing the tail cancels it.

The count is a scan of the whole table in PostgreSQL, the window rows are Python's work, so the
two overlap: the count runs on a second connection in the same snapshot (``pg_export_snapshot``)
while the pass reads the window rows from a guessed first id, where a binary search through the
primary key finds the window starting as if ids kept time order. They do not quite (a writer's
clock is not the commit order), so the guess is only where to start: the count gives the exact
lowest id of a window row, and the ids between it and the guess are read once it is done. Every
window row is read once, wherever its id is. The rows are all read in the pass's thread, as
before the overlap: a second thread allocating them too took memory.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import psycopg
import structlog
from psycopg import sql
from psycopg.rows import tuple_row

from collectors.gaps import GapSet
from collectors.logrows import Group, RowReader
from collectors.logsql import GroupRecord, Statements, from_epoch_us
from collectors.windows import Row
from exporter.collector import CollectorError, Reason
from exporter.db import Database
from exporter.errors import describe

log = structlog.get_logger(__name__)

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


@dataclass(frozen=True)
class _Window:
    """What the window rows are: newer than ``cutoff``, ids up to ``top``."""

    cutoff: datetime
    cutoff_us: int
    top: int


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
    _conns: list[psycopg.Connection[Any]] = field(default_factory=list, init=False)
    _cancelled: threading.Event = field(default_factory=threading.Event, init=False)

    def run(self) -> Started:
        with self.db.connect_direct() as conn:
            self._conns.append(conn)
            try:
                return self._read(conn)
            finally:
                self._conns.remove(conn)

    def cancel(self) -> None:
        """Stop the pass from another thread: its queries are cancelled in PostgreSQL."""
        self._cancelled.set()
        for conn in list(self._conns):
            conn.cancel_safe(timeout=2)

    def _read(self, conn: psycopg.Connection[Any]) -> Started:
        self._check_cancelled()  # closed before the connection was there to cancel
        conn.autocommit = False
        snapshot = self._begin(conn)
        info = self.sql.info.one(conn)
        detected = self.monotonic()  # every invisible id below max_id is invisible now
        now = self.now_us(info.now_us)
        window = _Window(from_epoch_us(now - self.longest_window_us),
                         now - self.longest_window_us, info.max_id or 0)
        self.sink.restart()
        gaps = GapSet(self.max_gap_ranges)

        def count(c: psycopg.Connection[Any]) -> tuple[Sequence[GroupRecord], int]:
            return self._groups(c, window.top, window.cutoff, gaps, detected)

        beside = None if snapshot is None else _Beside(self, snapshot, count).start()
        try:
            guess = window.top + 1 if beside is None else self._first_recent_guess(conn, window)
            if guess <= window.top:
                self._read_recent(conn, guess, window.top, window.cutoff)
            counted = None if beside is None else beside.join()
        except BaseException:
            if beside is not None:
                beside.stop()
            raise
        if counted is None:  # no second connection: counted here, after
            counted = count(conn)
        records, hi = counted
        if hi != window.top and guess <= window.top:
            # Stopped short at the gap limit, and rows past the stop were read: read again.
            self.sink.restart()
            guess = hi + 1
        unusable: Counter[str] = Counter()
        self.sink.deliver(self.reader.grouped(records, unusable), [], unusable)
        lowest = min((r.lowest_recent_id for r in records if r.lowest_recent_id is not None),
                     default=None)
        if lowest is not None and lowest < guess:
            self._read_recent(conn, lowest, min(hi, guess - 1), window.cutoff)
        conn.rollback()
        return Started(cursor=hi, filenode=info.filenode, gaps=gaps, now_us=now)

    @staticmethod
    def _begin(conn: psycopg.Connection[Any]) -> str | None:
        """Open the pass's transaction; the id of its snapshot, for the count beside, or None
        where it is not shared (the pass then counts on this connection): where PostgreSQL
        refuses to export it, and on a standby, whose exported snapshots could lose running
        transactions (pgsql-hackers 2026, "Don't discard subxip when exporting a snapshot
        taken during recovery"): the count and the window rows must see the same rows."""
        for share in (True, False):
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            conn.execute("SET LOCAL statement_timeout = 0")
            if not share:
                break
            try:  # the first query: the snapshot is taken here, and exported
                row = conn.execute(
                    "SELECT pg_export_snapshot() WHERE NOT pg_is_in_recovery()").fetchone()
            except psycopg.Error:
                conn.rollback()  # nothing was read yet: open the transaction again
                continue
            return None if row is None else str(row[0])
        return None

    def _groups(self, conn: psycopg.Connection[Any], hi: int, cutoff: datetime, gaps: GapSet,
                detected: float) -> tuple[Sequence[GroupRecord], int]:
        """Count every row up to ``hi`` into groups and track the ids missing below it. If they
        need more ranges than the limit, the pass stops short of the first hole that does not
        fit (the tail reads on from there) and counts again up to it. Returns the groups and
        the id the pass read up to."""
        # The planner has no statistics on the grouping expressions, guesses a group per ten
        # rows and sorts the table to group it (at 10M rows on disk: 11 s, against 3 s hashed).
        # There are a few hundred groups; hashing spills within work_mem should there be more.
        conn.execute("SET LOCAL enable_sort = off")
        conn.execute("SET LOCAL enable_incremental_sort = off")
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

    def _read_recent(self, conn: psycopg.Connection[Any], lo: int, hi: int,
                     cutoff: datetime) -> None:
        """Deliver the window rows with ids ``lo`` to ``hi``, a batch at a time (plain tuples
        through a server-side cursor: a million of them are read)."""
        with conn.cursor("customer_sync_warmup", row_factory=tuple_row) as cur:
            cur.execute(self.sql.warmup_recent.text, {"lo": lo, "hi": hi, "cutoff": cutoff})
            while batch := cur.fetchmany(WARMUP_BATCH):
                self._check_cancelled()
                self.sink.deliver([], self.reader.recent(batch))

    def _first_recent_guess(self, conn: psycopg.Connection[Any], window: _Window) -> int:
        """The lowest id of a window row if ids kept time order: a binary search through the
        primary key, a row at a time (about 24 lookups at 10M rows)."""
        lo, hi = 1, window.top + 1  # the first id of the window is in [lo, hi]
        while lo < hi:
            mid = (lo + hi) // 2
            rows = self.sql.tail.all(conn, {"cursor": mid - 1, "limit": 1})
            if not rows or rows[0].created_us is None or rows[0].created_us > window.cutoff_us:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise CollectorError(Reason.INTERNAL, "the start-up pass was cancelled: closed")


T = TypeVar("T")


@dataclass
class _Beside(Generic[T]):
    """``work`` on a second connection in the pass's snapshot, in a thread of its own."""

    startup: StartupPass
    snapshot: str
    work: Callable[[psycopg.Connection[Any]], T]
    thread: threading.Thread | None = None
    conn: psycopg.Connection[Any] | None = None
    result: T | None = None
    error: BaseException | None = None
    unavailable: str | None = None  # why no second connection in the snapshot was had
    _begun: bool = False  # in the snapshot: from here a failure fails the pass
    _stopped: bool = False

    def start(self) -> _Beside[T]:
        self.thread = threading.Thread(target=self._run, name="warmup-count", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            with self.startup.db.connect_direct() as conn:
                self.conn = conn
                self.startup._conns.append(conn)
                try:
                    self._work(conn)
                finally:
                    self.startup._conns.remove(conn)
        except psycopg.OperationalError as exc:
            if not self._begun:  # no connection to spare, say: the pass does it itself
                self.unavailable = describe(exc)
            else:
                self.error = exc
        except BaseException as exc:  # handed to the pass, which raises it
            self.error = exc

    def _work(self, conn: psycopg.Connection[Any]) -> None:
        if self._stopped:
            return
        self.startup._check_cancelled()  # cancelled before it could be
        conn.autocommit = False
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(
                sql.Literal(self.snapshot)))
        except psycopg.Error as exc:
            self.unavailable = describe(exc)
            return
        self._begun = True
        conn.execute("SET LOCAL statement_timeout = 0")
        self.result = self.work(conn)
        conn.rollback()

    def join(self) -> T | None:
        """Wait for the work; its result, or None when it could not be done beside (the pass
        then does it itself). Raises what stopped it."""
        assert self.thread is not None
        self.thread.join()
        if self.error is not None:
            raise self.error
        if self.unavailable is not None:
            log.info("start-up pass counts on its own connection", reason=self.unavailable)
        return self.result

    def stop(self) -> None:
        """Stop the work and wait until it has."""
        self._stopped = True
        if (conn := self.conn) is not None:
            conn.cancel_safe(timeout=2)
        assert self.thread is not None
        self.thread.join()
