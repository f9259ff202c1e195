"""Reading ``common_customersynclog`` once: a start-up pass, then a tail by primary key.

Why not SQL on every scrape: the table has no index on ``created_at``, so a windowed query is a
sequential scan (seconds at 10M rows). Rows are append-only with monotone ids, so we read each row
once and keep aggregates in memory; a scrape costs O(rows that arrived since the last one).

The hard cases:

* **Out-of-order commits.** Ids are taken when a transaction inserts, not when it commits, so a
  lower id can become visible after a higher one. Every id we skip over becomes a *gap*, kept as
  ranges (:mod:`collectors.gaps`); gaps are re-read by id ranges through the primary key on each
  poll until they show up, or until every transaction that could still hold them has ended (a
  sequence gap: rolled back), and never while the id sequence has not handed them out yet. A
  million-row transaction is a few hundred ranges; while it is open each poll walks its
  invisible index entries in PostgreSQL (about 0.1 s per million); once it commits, its rows
  are read a batch at a time over as many scrapes as they need.
* **The gap limit.** At most ``max_gap_ranges`` ranges are tracked. Rather than forget one (and
  undercount), the tail stops short of the row that would need another and says so (a counter,
  a warning, a failure message); it reads on as the transactions holding the ids end.
* **Start-up.** One pass over the table in a repeatable-read snapshot (:mod:`collectors.warmup`),
  in a thread of its own; the tail polls on from where it stopped.
* **Values without a finite meaning.** A row whose ``created_at`` is infinite, whose duration is
  negative or whose label value cannot be exported is still counted (:mod:`collectors.logrows`).
* **Truncate or restore.** If ``max(id)`` goes below our cursor, or the table's storage
  (``pg_relation_filenode``) changes, the table was replaced: everything is re-read from scratch
  (counters reset, which Prometheus handles). The file node catches a TRUNCATE followed by new
  rows before our next poll, when ids kept growing (no RESTART IDENTITY).
* **Outages.** The cursor and the gaps survive a lost connection; reading resumes where it stopped.

One round trip (issue 16): a poll's first statement asks the table's state, the first batch of
new rows and what each *rider* (another reader of the same database, :class:`Rider`) asks, in one
snapshot; callers with the same deadline (one scrape's collectors) share one poll. A rider whose
part fails is told so and the poll is asked again without it, so it fails on its own.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
import structlog
from psycopg import sql

from collectors.gaps import GapSet, Plan
from collectors.labels import LabelSet
from collectors.logrows import Group, LogSubscriber, RowReader
from collectors.logsql import LogRecord, Polled, Rendered, Statements, TableInfo
from collectors.warmup import StartupPass
from collectors.windows import Row
from exporter.collector import CollectorError, Deadline, Reason
from exporter.db import Database, classify
from exporter.errors import describe

log = structlog.get_logger(__name__)

GAP_SETTLE_SECONDS = 1.0
MAX_GAP_RANGES = 250_000  # 24 bytes each: 6 MB at the limit
GAP_RANGES_PER_QUERY = 10_000


@dataclass
class TailStats:
    rows_read: int = 0
    rebaselines: int = 0
    gaps_expired: int = 0
    gap_limit_reached: int = 0
    unusable: Counter[str] = field(default_factory=Counter)


class Rider(Protocol):
    """A one-row read that travels in the tail's poll statement instead of a statement of its
    own. It is asked while ``riding`` is true."""

    columns: int  # how many columns its part returns

    @property
    def riding(self) -> bool: ...

    def part(self, now_us: int | None) -> tuple[sql.Composable, dict[str, Any]]:
        """A one-row SELECT, the same every time, and its parameters (named, not clashing
        with the tail's); ``now_us`` is the tail's time before this poll."""
        ...

    def take(self, values: tuple[Any, ...], now_us: int, deadline: Deadline) -> None:
        """Its columns, read in the poll for ``deadline`` at ``now_us`` (the windows' time)."""
        ...

    def missed(self) -> None:
        """Its part failed (or the whole poll did): it reads alone until it says otherwise."""
        ...


@dataclass
class LogTail:
    """Keeps every subscriber current with the log; one instance per table."""

    db: Database
    table: str
    bucket_thresholds_ms: Sequence[int]
    ops: LabelSet
    statuses: LabelSet
    longest_window_us: int
    batch_size: int = 50_000
    clock_us: Callable[[], int] | None = None  # None: the database clock
    on_rows: Callable[[list[Row]], None] | None = None
    on_time: Callable[[int], None] | None = None
    subscribers: list[LogSubscriber] = field(default_factory=list)
    monotonic: Callable[[], float] = time.monotonic  # settles gaps; query timing is real time
    max_gap_ranges: int = MAX_GAP_RANGES
    riders: list[Rider] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sql = Statements.build(self.table, self.bucket_thresholds_ms)
        self.reader = RowReader(self.ops, self.statuses)
        self.cursor = 0
        self.filenode: int | None = None  # the table's storage when we read it from the start
        self.gaps = GapSet(self.max_gap_ranges)
        self.stats = TailStats()
        self.now_us: int | None = None
        self.warm = False
        self.lock = threading.RLock()  # guards the state; collectors read under it too
        self._generation = 0
        self._poll_error: CollectorError | None = None  # how the last refresh ended
        self._polled_for: Deadline | None = None  # the deadline the last refresh ran for
        self._polls: dict[tuple[int, ...], tuple[Any, Rendered]] = {}  # by the parts' ids
        self._at_gap_limit = False
        self._closed = False
        self._warmup: StartupPass | None = None
        self._warmup_thread: threading.Thread | None = None
        self._warmup_error: CollectorError | None = None
        self._warmup_started = 0.0

    # --- public ----------------------------------------------------------------------------

    def refresh(self, deadline: Deadline) -> None:
        """Bring everything up to date, or raise why not. Concurrent callers share one refresh,
        and so do callers with the same deadline (the collectors of one scrape)."""
        if self._closed:
            raise CollectorError(Reason.INTERNAL, f"reading {self.table}: closed")
        if not self.warm:
            self._ensure_warmup()
            if not self.warm:
                raise self._warmup_status()
        generation = self._generation
        with self.lock:
            if self._generation != generation or self._polled_for == deadline:
                # Another caller refreshed while we waited, or for this very scrape: share its
                # outcome, failure included.
                if self._poll_error is not None:
                    raise CollectorError(self._poll_error.reason, self._poll_error.message)
                return
            try:
                self._poll(deadline)
                self._poll_error = None
            except CollectorError as exc:
                self._poll_error = exc
                raise
            finally:
                self._generation += 1
                self._polled_for = deadline

    def close(self) -> None:
        """Stop reading: a start-up pass in flight is cancelled, and none starts again."""
        with self.lock:
            self._closed = True
            warmup = self._warmup
        if warmup is not None:
            warmup.cancel()

    # --- start-up pass (collectors.warmup), in a thread of its own ---------------------------

    def _ensure_warmup(self) -> None:
        with self.lock:
            if self.warm or self._closed:
                return
            if not (self._warmup_thread and self._warmup_thread.is_alive()):
                self._warmup_error = None
                self._warmup_started = self.monotonic()
                self._warmup = StartupPass(
                    db=self.db, sql=self.sql, reader=self.reader, sink=self,
                    longest_window_us=self.longest_window_us, max_gap_ranges=self.max_gap_ranges,
                    now_us=self._now, monotonic=self.monotonic)
                self._warmup_thread = threading.Thread(
                    target=self._warm_up, args=(self._warmup,), name=f"warmup-{self.table}",
                    daemon=True)
                self._warmup_thread.start()
            thread = self._warmup_thread
        # A small table is read within a moment: wait briefly (every caller, not only the one
        # that started the pass) so the first scrape can be whole.
        thread.join(timeout=0.5)

    def _warmup_status(self) -> CollectorError:
        if self._warmup_error is not None:
            return self._warmup_error
        elapsed = self.monotonic() - self._warmup_started
        return CollectorError(
            Reason.TIMEOUT, f"reading {self.table} once at start-up ({elapsed:.0f}s so far)"
        )

    def _warm_up(self, warmup: StartupPass) -> None:
        try:
            started = warmup.run()
            with self.lock:
                self.cursor = started.cursor
                self.filenode = started.filenode
                self.gaps = started.gaps
                self._set_time(started.now_us)
                self.warm = True
        except CollectorError as exc:
            self._warmup_error = exc
        except Exception as exc:
            self._warmup_error = CollectorError(classify(exc), describe(exc))

    def restart(self) -> None:
        """Forget everything read (the start-up pass counts from the start)."""
        with self.lock:
            self.cursor = 0
            self.gaps.clear()
            self.now_us = None
            for s in self.subscribers:
                s.reset()

    def deliver(self, groups: list[Group], rows: list[Row],
                unusable: Counter[str] | None = None) -> None:
        """Hand what was read to the subscribers and the windows, and count it."""
        with self.lock:
            for s in self.subscribers:
                s.on_groups(groups)
            if self.on_rows is not None and rows:
                self.on_rows(rows)
            self.stats.rows_read += sum(g.rows for g in groups)
            if unusable:
                self.stats.unusable.update(unusable)

    # --- polling ---------------------------------------------------------------------------

    def _poll(self, deadline: Deadline) -> None:
        with self.db.connection(deadline) as conn:
            started = time.monotonic()
            polled = self._first_read(conn, deadline)
            info = polled.info
            if (info.max_id or 0) < self.cursor or info.filenode != self.filenode:
                self.stats.rebaselines += 1
                self.warm = False
                raise CollectorError(
                    Reason.QUERY,
                    f"{self.table}: max(id) {info.max_id} is below the cursor {self.cursor} or "
                    "its storage changed; the table was truncated or restored, reading it again",
                )
            self._reread_gaps(conn, deadline, info)
            # The first batch was read with info, before the gaps: it is handled after them, as
            # if read then (gaps below the cursor and new rows above it do not meet).
            self._read_new(conn, deadline, polled.rows, started)
        if self._at_gap_limit:
            self._at_gap_limit = False
            log.info("sync-log gap limit cleared", table=self.table, cursor=self.cursor,
                     gap_ranges=self.gaps.ranges)

    def _first_read(self, conn: psycopg.Connection[Any], deadline: Deadline) -> Polled:
        """Info, the riders' rows and the first batch of new rows, in one statement; again
        without the riders if one of them made it fail as a query (each then fails alone)."""
        params: dict[str, Any] = {"cursor": self.cursor, "limit": self.batch_size}
        riders = [r for r in self.riders if r.riding]
        parts = []
        for rider in riders:
            part, rider_params = rider.part(self.now_us)
            parts.append((part, rider.columns))
            params.update(rider_params)
        try:
            rows = conn.execute(self._poll_statement(parts)(conn), params).fetchall()
        except psycopg.Error as exc:
            if not riders:
                raise
            for rider in riders:
                rider.missed()
            if classify(exc) is not Reason.QUERY:  # down or out of time: no second try
                raise
            riders, parts = [], []
            rows = conn.execute(self._poll_statement(parts)(conn), params).fetchall()
        polled = Polled.split(rows, [n for _, n in parts])
        self._set_time(self._now(polled.info.now_us))
        assert self.now_us is not None
        for rider, values in zip(riders, polled.riders, strict=True):
            rider.take(values, self.now_us, deadline)
        return polled

    def _poll_statement(self, parts: Sequence[tuple[sql.Composable, int]]) -> Rendered:
        """The poll for these parts, composed and rendered once (a rider's part is the same
        object every time; kept here, so its id is not reused while it is a key)."""
        key = tuple(id(part) for part, _ in parts)
        cached = self._polls.get(key)
        if cached is None:
            cached = self._polls[key] = (tuple(parts), Rendered(self.sql.poll(parts)))
        return cached[1]

    def _reread_gaps(self, conn: psycopg.Connection[Any], deadline: Deadline,
                     info: TableInfo) -> None:
        started = [time.monotonic()]

        def fetch(plan: Plan) -> list[LogRecord]:
            started[0] = time.monotonic()
            return self.sql.gaps.all(conn, {
                "lo": [p[0] for p in plan], "hi": [p[1] for p in plan],
                "limit": [p[2] for p in plan],
            })

        reread = self.gaps.reread(
            fetch, self._consume, budget=self.batch_size,
            ranges_per_query=GAP_RANGES_PER_QUERY,
            # Time for another batch as long as the last one took (query and consuming it).
            more=lambda: deadline.remaining() >= 2 * (time.monotonic() - started[0]),
        )
        self.gaps.note_horizons(self.monotonic(), info.xmax, GAP_SETTLE_SECONDS)
        # Only ids looked at since ``xmin`` was read may go (a row committed into the others
        # could still be unread), and only ids the sequence has handed out.
        taken = info.last_value
        below = reread.covered if taken is None else min(reread.covered, taken + 1)
        self.stats.gaps_expired += self.gaps.expire(info.xmin, below=below)
        if reread.at_limit:
            raise self.gap_limit_reached()
        if not reread.complete:
            raise CollectorError(
                Reason.TIMEOUT,
                f"catching up on {self.table}: more rows committed into pending gaps than "
                "one scrape can read",
            )

    def _read_new(self, conn: psycopg.Connection[Any], deadline: Deadline,
                  rows: list[LogRecord], started: float) -> None:
        """Hand out ``rows`` (the first batch, read at ``started``) and read on while batches
        come back full and time is left."""
        while rows:
            accepted = self._note_gaps(rows)
            self._consume(rows[:accepted])
            if accepted < len(rows):
                raise self.gap_limit_reached()
            if len(rows) < self.batch_size:
                return
            if deadline.remaining() < 2 * (time.monotonic() - started):
                # What was read is served; the rest is read by the next scrapes.
                raise CollectorError(
                    Reason.TIMEOUT,
                    f"catching up on {self.table}: more new rows than one scrape can read",
                )
            started = time.monotonic()
            rows = self.sql.tail.all(conn, {"cursor": self.cursor, "limit": self.batch_size})

    def _note_gaps(self, rows: Sequence[LogRecord]) -> int:
        """Track the ids skipped before each row; returns how many rows may be consumed (all,
        unless a gap needs a range beyond the limit: then the rows before it)."""
        detected = self.monotonic()
        expected = self.cursor + 1
        for i, rec in enumerate(rows):
            if rec.id > expected and not self.gaps.add(expected, rec.id - 1, detected):
                self.cursor = expected - 1
                return i
            expected = rec.id + 1
        self.cursor = rows[-1].id
        return len(rows)

    def gap_limit_reached(self, stop_at: int | None = None) -> CollectorError:
        """Count, log (once until it clears) and describe a stop at the gap limit."""
        self.stats.gap_limit_reached += 1
        cursor = self.cursor if stop_at is None else stop_at
        if not self._at_gap_limit:
            self._at_gap_limit = True
            log.warning("sync-log gap limit reached", table=self.table, cursor=cursor,
                        gap_ranges=self.gaps.ranges, pending_ids=self.gaps.ids)
        return CollectorError(
            Reason.TIMEOUT,
            f"{self.table}: gap limit reached: {self.gaps.ranges} ranges of ids not seen yet "
            f"(limit {self.gaps.max_ranges}), held by transactions still open; rows after id "
            f"{cursor} are read as those end",
        )

    def _consume(self, rows: Sequence[LogRecord]) -> None:
        if rows:
            groups, window_rows = self.reader.tailed(rows, self.stats.unusable)
            self.deliver(groups, window_rows)

    def _now(self, db_now_us: int) -> int:
        return self.clock_us() if self.clock_us is not None else db_now_us

    def _set_time(self, now_us: int) -> None:
        self.now_us = now_us if self.now_us is None else max(self.now_us, now_us)
        if self.on_time is not None:
            self.on_time(self.now_us)
