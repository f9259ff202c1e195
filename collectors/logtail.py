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
* **Start-up.** One pass over the table in a repeatable-read snapshot: aggregates for old rows,
  individual rows for the recent ones (the longest window), and every id missing below the
  highest visible one as a gap, since a transaction in flight during the pass may hold it.
* **Values without a finite meaning.** A row whose ``created_at`` is infinite (or past any Unix
  microsecond a bigint holds), whose duration is negative or whose label value cannot be
  exported is still counted; it stays out of what it
  cannot take part in (windows, durations, its label) and is counted by reason.
* **Truncate or restore.** If ``max(id)`` goes below our cursor, or the table's storage
  (``pg_relation_filenode``) changes, the table was replaced: everything is re-read from scratch
  (counters reset, which Prometheus handles). The file node catches a TRUNCATE followed by new
  rows before our next poll, when ids kept growing (no RESTART IDENTITY).
* **Outages.** The cursor and the gaps survive a lost connection; reading resumes where it stopped.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import structlog
from psycopg import sql

from collectors.gaps import GapSet, Plan
from exporter.collector import CollectorError, Deadline, Reason
from exporter.db import Database, classify, describe

log = structlog.get_logger(__name__)

GAP_SETTLE_SECONDS = 1.0
MAX_GAP_RANGES = 250_000  # 24 bytes each: 6 MB at the limit
GAP_RANGES_PER_QUERY = 10_000
WARMUP_BATCH = 20_000
MAX_LABEL_LENGTH = 100

OPERATION_TYPES = (
    "created", "updated", "skipped", "error", "import_from_1c", "export_to_1c",
    "customer_identification", "conflict_resolution", "sync_changes", "batch_operation",
    "data_validation", "notification_failed", "identify_customer",
)  # fmt: skip
"""DATA.md §2: the declared operation types plus the legacy ``identify_customer``."""

STATUSES = ("success", "failed", "error", "warning", "skipped", "pending", "not_found")
"""DATA.md §2: the declared statuses plus the legacy ``not_found``."""

OTHER = "other"

CREATED_AT_OUT_OF_RANGE = "created_at_out_of_range"
DURATION_NEGATIVE = "duration_negative"
LABEL_VALUE_INVALID = "label_value_invalid"
UNUSABLE_REASONS = (CREATED_AT_OUT_OF_RANGE, DURATION_NEGATIVE, LABEL_VALUE_INVALID)
"""Why a row's value could not be used; the row itself is always counted."""


def label_value_ok(value: object) -> bool:
    """A value we export as a label as is: 1 to 100 printable characters (no control, format
    or separator characters, which would garble a dashboard or an alert message)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_LABEL_LENGTH and value.isprintable()


class LabelSet:
    """Interns label values: known ones first, then up to ``cap`` unknown ones, then ``other``.

    A value that is not :func:`label_value_ok` is ``other`` too, and never takes a place."""

    def __init__(self, known: Sequence[str], cap: int) -> None:
        self.values: list[str] = [*known, OTHER]
        self._index = {v: i for i, v in enumerate(self.values)}
        self.other = self._index[OTHER]
        self._cap = cap
        self._unknown = 0
        self.known_count = len(known)

    def code(self, value: str | None) -> int:
        i = self._index.get(value) if value is not None else None
        if i is not None:
            return i
        if self._unknown >= self._cap or not label_value_ok(value):
            return self.other
        assert value is not None
        self._unknown += 1
        self.values.append(value)
        self._index[value] = len(self.values) - 1
        return len(self.values) - 1


def pack(op: int, status: int) -> int:
    return (op << 16) | status


def unpack(code: int) -> tuple[int, int]:
    return code >> 16, code & 0xFFFF


class Group(NamedTuple):
    """Rows that share every label-relevant value (a single row while tailing)."""

    op: int
    status: int
    bucket: int | None  # histogram bucket index, None when there is no usable duration
    conflict_source: str | None
    email_sent: str | None
    search_method: str | None
    found: str | None
    identification_method: str | None
    rows: int
    duration_sum_ms: int
    newest_us: int | None  # None when no row of the group has a finite created_at


class LogSubscriber(Protocol):
    """Receives everything read from the log: cumulative groups and rows for the windows."""

    def on_groups(self, groups: Sequence[Group]) -> None: ...

    def reset(self) -> None: ...


_DETAILS = """
    CASE WHEN operation_type = 'conflict_resolution' THEN details->>'conflict_source' END,
    CASE WHEN operation_type = 'conflict_resolution' THEN details->>'email_sent' END,
    CASE WHEN operation_type = 'customer_identification' THEN details->>'search_method' END,
    CASE WHEN operation_type = 'customer_identification' THEN details->>'found' END,
    CASE WHEN operation_type = 'identify_customer' THEN details->>'identification_method' END
"""
# Unix microseconds in a bigint, as the windows keep them. An infinite timestamp, or one after
# the year 294,246, has none (the cast would fail the whole query): NULL instead.
USABLE_TS = "isfinite({c}) AND extract(epoch FROM {c}) < 9223372036854"
_USABLE = USABLE_TS.format(c="created_at")
_TS = "CASE WHEN " + _USABLE + " THEN (extract(epoch FROM created_at) * 1000000)::int8 END"
_DURATION = "CASE WHEN duration_ms >= 0 THEN duration_ms END"
_BUCKET = "width_bucket(" + _DURATION + ", {thresholds}::int8[])"  # bounds past int4 ms too
_ROW = (
    "id, operation_type, status, " + _TS + ", duration_ms, customer_id, " + _BUCKET + ", "
    + _DETAILS
)

_TAIL = "SELECT " + _ROW + " FROM {table} WHERE id > %(cursor)s ORDER BY id LIMIT %(limit)s"
# One index range scan per gap range, each limited, so a million rows that just became visible
# are read a budget at a time, lowest ids first.
_GAPS = (
    "SELECT g.* FROM unnest(%(lo)s::int8[], %(hi)s::int8[], %(limit)s::int8[]) AS r(lo, hi, n)"
    " CROSS JOIN LATERAL (SELECT " + _ROW + " FROM {table}"
    " WHERE id BETWEEN r.lo AND r.hi ORDER BY id LIMIT r.n) AS g"
)
_INFO = (
    "SELECT (extract(epoch FROM now()) * 1000000)::int8,"
    " pg_snapshot_xmin(pg_current_snapshot())::text::int8,"
    " pg_snapshot_xmax(pg_current_snapshot())::text::int8,"
    " (SELECT max(id) FROM {table}),"
    " pg_relation_filenode({regclass}::regclass),"
    # The last id the table's sequence handed out (NULL without the privilege to see it): an id
    # above it was never taken, so it is not a rolled-back gap but a row still to come (below a
    # row inserted with an explicit, higher id).
    " (SELECT last_value FROM pg_sequences WHERE quote_ident(schemaname) || '.'"
    " || quote_ident(sequencename) = pg_get_serial_sequence({regclass}, 'id'))"
)
# The start-up pass, in one repeatable-read snapshot. First every row is counted into a few
# label groups (one scan, hashed, parallel); the same scan finds the lowest id of a recent row,
# so the rows the windows need are then read through the primary key from there, in id (nearly
# time) order: one full pass plus the window, never two.
_WARMUP_GROUPS = (
    "SELECT operation_type, status, " + _BUCKET + ", " + _DETAILS + ","
    " count(*), coalesce(sum(" + _DURATION + "), 0)::int8,"
    " (extract(epoch FROM max(created_at) FILTER (WHERE " + _USABLE + "))"
    " * 1000000)::int8,"  # numeric math once a group
    " min(id) FILTER (WHERE created_at > %(cutoff)s AND " + _USABLE + "),"
    " count(*) FILTER (WHERE NOT coalesce(" + _USABLE + ", false)),"
    " count(*) FILTER (WHERE duration_ms < 0),"
    " min(id)"
    " FROM {table} WHERE id <= %(hi)s GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"
)
_WARMUP_RECENT = (
    "SELECT id, operation_type, status, " + _TS + ", " + _DURATION + ", customer_id FROM {table}"
    " WHERE id >= %(lo)s AND id <= %(hi)s AND created_at > %(cutoff)s AND " + _USABLE
    + " ORDER BY id"
)
# Ids missing between visible rows: a transaction in flight may hold them. Read only when the
# row count says there are some (an index-only scan).
_WARMUP_HOLES = (
    "SELECT prev + 1, id - 1 FROM (SELECT id, lag(id) OVER (ORDER BY id) AS prev FROM {table}"
    " WHERE id <= %(hi)s) AS s WHERE id > prev + 1 ORDER BY id"
)


@dataclass
class TailStats:
    rows_read: int = 0
    rebaselines: int = 0
    gaps_expired: int = 0
    gap_limit_reached: int = 0
    unusable: Counter[str] = field(default_factory=Counter)


WindowRow = tuple[int, int, int, int]


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
    on_rows: Callable[[list[WindowRow]], None] | None = None
    on_time: Callable[[int], None] | None = None
    subscribers: list[LogSubscriber] = field(default_factory=list)
    monotonic: Callable[[], float] = time.monotonic  # settles gaps; query timing is real time
    max_gap_ranges: int = MAX_GAP_RANGES

    def __post_init__(self) -> None:
        self.cursor = 0
        self.filenode: int | None = None  # the table's storage when we read it from the start
        self.gaps = GapSet(self.max_gap_ranges)
        self.stats = TailStats()
        self.now_us: int | None = None
        self.warm = False
        self.lock = threading.RLock()  # guards the state; collectors read under it too
        self._generation = 0
        self._warmup_thread: threading.Thread | None = None
        self._warmup_error: CollectorError | None = None
        self._poll_error: CollectorError | None = None  # how the last refresh ended
        self._warmup_started = 0.0
        self._at_gap_limit = False
        ident = sql.Identifier(*self.table.split("."))
        thresholds = sql.Literal([int(t) + 1 for t in self.bucket_thresholds_ms])
        regclass = sql.Literal(".".join(
            '"' + part.replace('"', '""') + '"' for part in self.table.split(".")))
        self._sql = {
            name: sql.SQL(text).format(table=ident, thresholds=thresholds, regclass=regclass)
            for name, text in (("tail", _TAIL), ("gaps", _GAPS), ("info", _INFO),
                               ("warmup_groups", _WARMUP_GROUPS),
                               ("warmup_recent", _WARMUP_RECENT),
                               ("warmup_holes", _WARMUP_HOLES))
        }

    # --- public ----------------------------------------------------------------------------

    def refresh(self, deadline: Deadline) -> None:
        """Bring everything up to date, or raise why not. Concurrent callers share one refresh."""
        if not self.warm:
            self._ensure_warmup()
            if not self.warm:
                raise self._warmup_status()
        generation = self._generation
        with self.lock:
            if self._generation != generation:
                # Another caller refreshed while we waited: share its outcome, failure included.
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

    # --- start-up pass ---------------------------------------------------------------------

    def _ensure_warmup(self) -> None:
        with self.lock:
            if self.warm:
                return
            if not (self._warmup_thread and self._warmup_thread.is_alive()):
                self._warmup_error = None
                self._warmup_started = self.monotonic()
                self._warmup_thread = threading.Thread(
                    target=self._warmup, name=f"warmup-{self.table}", daemon=True
                )
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

    def _warmup(self) -> None:
        try:
            with self.db.connect_direct() as conn:
                conn.autocommit = False
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                conn.execute("SET LOCAL statement_timeout = 0")
                now, _xmin, _xmax, hi, filenode, _seq = conn.execute(self._sql["info"]).fetchone()  # type: ignore[misc]
                detected = self.monotonic()  # every invisible id below hi is invisible now
                now = self._now(now)
                hi = hi or 0
                cutoff = _ts_param(now - self.longest_window_us)
                with self.lock:
                    self._reset_state()
                gaps = GapSet(self.max_gap_ranges)
                unusable: Counter[str] = Counter()
                groups, lowest_recent, hi = self._warmup_groups(conn, hi, cutoff, gaps, detected,
                                                                unusable)
                with self.lock:
                    self._deliver(groups, [])
                    self.stats.rows_read += sum(g.rows for g in groups)
                    self.stats.unusable.update(unusable)
                if lowest_recent is not None:
                    # A server-side cursor streams the rows: memory stays flat at any size.
                    with conn.cursor(name="customer_sync_warmup") as cur:
                        cur.execute(self._sql["warmup_recent"],
                                    {"lo": lowest_recent, "hi": hi, "cutoff": cutoff})
                        while batch := cur.fetchmany(WARMUP_BATCH):
                            recent: list[WindowRow] = [
                                (ts, pack(self.ops.code(op), self.statuses.code(status)),
                                 -1 if dur is None else dur, -1 if customer is None else customer)
                                for _id, op, status, ts, dur, customer in batch
                            ]
                            with self.lock:
                                self._deliver([], recent)
                conn.rollback()
            with self.lock:
                self.cursor = hi
                self.filenode = filenode
                self.gaps = gaps
                self._set_time(now)
                self.warm = True
        except CollectorError as exc:
            self._warmup_error = exc
        except Exception as exc:
            self._warmup_error = CollectorError(classify(exc), describe(exc))

    def _warmup_groups(self, conn: Any, hi: int, cutoff: Any, gaps: GapSet, detected: float,
                       unusable: Counter[str]) -> tuple[list[Group], int | None, int]:
        """Count every row up to ``hi`` into groups and track the ids missing below it. If they
        need more ranges than the limit, the pass stops short of the first hole that does not
        fit (the tail reads on from there) and counts again up to it. Returns the groups, the
        lowest id of a recent row and the id the pass read up to."""
        records = conn.execute(self._sql["warmup_groups"], {"cutoff": cutoff, "hi": hi}).fetchall()
        first = min((rec[14] for rec in records), default=None)
        if first is not None and sum(rec[8] for rec in records) != hi - first + 1:
            stop = self._warmup_holes(conn, hi, first, gaps, detected)
            if stop is not None:
                hi = stop
                records = conn.execute(self._sql["warmup_groups"],
                                       {"cutoff": cutoff, "hi": hi}).fetchall()
        elif first is not None and first > 1:
            gaps.add(1, first - 1, detected)  # rows deleted, or in flight, before the first
        groups, lowest_recent = [], None
        for rec in records:
            unusable[CREATED_AT_OUT_OF_RANGE] += rec[12]
            unusable[DURATION_NEGATIVE] += rec[13]
            groups.append(self._group(rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6],
                                      rec[7], rec[8], rec[9], rec[10], unusable))
            if rec[11] is not None and (lowest_recent is None or rec[11] < lowest_recent):
                lowest_recent = rec[11]
        return groups, lowest_recent, hi

    def _warmup_holes(self, conn: Any, hi: int, first: int, gaps: GapSet,
                      detected: float) -> int | None:
        """Track the ids missing between visible rows up to ``hi``; at the range limit, the id
        to stop the pass at (the last visible one below the first hole that did not fit)."""
        if first > 1:
            gaps.add(1, first - 1, detected)
        with conn.cursor(name="customer_sync_holes") as cur:
            cur.execute(self._sql["warmup_holes"], {"hi": hi})
            while batch := cur.fetchmany(WARMUP_BATCH):
                for lo, top in batch:
                    if not gaps.add(lo, top, detected):
                        self._gap_limit_reached(stop_at=lo - 1)
                        return int(lo) - 1
        return None

    def _reset_state(self) -> None:
        self.cursor = 0
        self.gaps.clear()
        self.now_us = None
        for s in self.subscribers:
            s.reset()

    # --- polling ---------------------------------------------------------------------------

    def _poll(self, deadline: Deadline) -> None:
        with self.db.connection(deadline) as conn:
            now, xmin, xmax, max_id, filenode, taken = conn.execute(self._sql["info"]).fetchone()  # type: ignore[misc]
            if (max_id or 0) < self.cursor or filenode != self.filenode:
                self.stats.rebaselines += 1
                self.warm = False
                raise CollectorError(
                    Reason.QUERY,
                    f"{self.table}: max(id) {max_id} is below the cursor {self.cursor} or its "
                    "storage changed; the table was truncated or restored, reading it again",
                )
            self._set_time(self._now(now))
            started = [time.monotonic()]

            def fetch(plan: Plan) -> list[Any]:
                started[0] = time.monotonic()
                return conn.execute(self._sql["gaps"], {
                    "lo": [p[0] for p in plan], "hi": [p[1] for p in plan],
                    "limit": [p[2] for p in plan],
                }).fetchall()

            reread = self.gaps.reread(
                fetch, self._consume, budget=self.batch_size,
                ranges_per_query=GAP_RANGES_PER_QUERY,
                # Time for another batch as long as the last one took (query and consuming it).
                more=lambda: deadline.remaining() >= 2 * (time.monotonic() - started[0]),
            )
            self.gaps.note_horizons(self.monotonic(), xmax, GAP_SETTLE_SECONDS)
            # Only ids looked at since ``xmin`` was read may go (a row committed into the others
            # could still be unread), and only ids the sequence has handed out.
            below = reread.covered if taken is None else min(reread.covered, taken + 1)
            self.stats.gaps_expired += self.gaps.expire(xmin, below=below)
            if reread.at_limit:
                raise self._gap_limit_reached()
            if not reread.complete:
                raise CollectorError(
                    Reason.TIMEOUT,
                    f"catching up on {self.table}: more rows committed into pending gaps than "
                    "one scrape can read",
                )
            self._read_new(conn, deadline)
        if self._at_gap_limit:
            self._at_gap_limit = False
            log.info("sync-log gap limit cleared", table=self.table, cursor=self.cursor,
                     gap_ranges=self.gaps.ranges)

    def _read_new(self, conn: Any, deadline: Deadline) -> None:
        while True:
            started = time.monotonic()
            rows = conn.execute(
                self._sql["tail"], {"cursor": self.cursor, "limit": self.batch_size}
            ).fetchall()
            if not rows:
                return
            accepted = self._note_gaps(rows)
            self._consume(rows[:accepted])
            if accepted < len(rows):
                raise self._gap_limit_reached()
            if len(rows) < self.batch_size:
                return
            if deadline.remaining() < 2 * (time.monotonic() - started):
                # What was read is served; the rest is read by the next scrapes.
                raise CollectorError(
                    Reason.TIMEOUT,
                    f"catching up on {self.table}: more new rows than one scrape can read",
                )

    def _note_gaps(self, rows: Sequence[Any]) -> int:
        """Track the ids skipped before each row; returns how many rows may be consumed (all,
        unless a gap needs a range beyond the limit: then the rows before it)."""
        detected = self.monotonic()
        expected = self.cursor + 1
        for i, rec in enumerate(rows):
            row_id = rec[0]
            if row_id > expected and not self.gaps.add(expected, row_id - 1, detected):
                self.cursor = expected - 1
                return i
            expected = row_id + 1
        self.cursor = rows[-1][0]
        return len(rows)

    def _gap_limit_reached(self, stop_at: int | None = None) -> CollectorError:
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

    def _consume(self, rows: Sequence[Any]) -> None:
        if not rows:
            return
        groups = []
        window_rows = []
        unusable = self.stats.unusable
        for rec in rows:
            ts, duration, customer = rec[3], rec[4], rec[5]
            if duration is not None and duration < 0:
                unusable[DURATION_NEGATIVE] += 1
                duration = None
            group = self._group(rec[1], rec[2], rec[6], rec[7], rec[8], rec[9], rec[10], rec[11],
                                1, duration or 0, ts, unusable)
            groups.append(group)
            if ts is None:
                unusable[CREATED_AT_OUT_OF_RANGE] += 1
            else:
                window_rows.append((ts, pack(group.op, group.status),
                                    -1 if duration is None else duration,
                                    -1 if customer is None else customer))
        self._deliver(groups, window_rows)
        self.stats.rows_read += len(rows)

    def _deliver(self, groups: list[Group], rows: list[WindowRow]) -> None:
        for s in self.subscribers:
            s.on_groups(groups)
        if self.on_rows is not None and rows:
            self.on_rows(rows)

    def _group(self, op: str | None, status: str | None, bucket: int | None, cs: str | None,
               es: str | None, sm: str | None, fd: str | None, im: str | None, count: int,
               dur_sum: int, newest: int | None, unusable: Counter[str]) -> Group:
        op_code, status_code = self.ops.code(op), self.statuses.code(status)
        if ((op_code == self.ops.other and not label_value_ok(op))
                or (status_code == self.statuses.other and not label_value_ok(status))
                or _unusable_detail(cs) or _unusable_detail(sm) or _unusable_detail(im)):
            unusable[LABEL_VALUE_INVALID] += count
            cs, sm, im = (OTHER if _unusable_detail(v) else v for v in (cs, sm, im))
        return Group(op_code, status_code, bucket, cs, es, sm, fd, im, count, dur_sum, newest)

    def _now(self, db_now_us: int) -> int:
        return self.clock_us() if self.clock_us is not None else db_now_us

    def _set_time(self, now_us: int) -> None:
        self.now_us = now_us if self.now_us is None else max(self.now_us, now_us)
        if self.on_time is not None:
            self.on_time(self.now_us)


def _unusable_detail(value: str | None) -> bool:
    """A ``details`` value that would become a label but cannot (absent or empty is fine: it
    means unknown)."""
    return bool(value) and not label_value_ok(value)


def _ts_param(us: int) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
