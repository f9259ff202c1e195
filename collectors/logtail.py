"""Reading ``common_customersynclog`` once: a start-up pass, then a tail by primary key.

Why not SQL on every scrape: the table has no index on ``created_at``, so a windowed query is a
sequential scan (seconds at 10M rows). Rows are append-only with monotone ids, so we read each row
once and keep aggregates in memory; a scrape costs O(rows that arrived since the last one).

The hard cases:

* **Out-of-order commits.** Ids are taken when a transaction inserts, not when it commits, so a
  lower id can become visible after a higher one. Every id we skip over becomes a *gap*; gaps are
  re-read by primary key on each poll until they show up, or until every transaction that could
  still hold them has ended. That is decided with PostgreSQL's own snapshots: when a gap has been
  known for a settle period we note the current snapshot's ``xmax``; once a later snapshot's
  ``xmin`` reaches it, no transaction from that time is still running, so the id was rolled back
  (a sequence gap) and is forgotten.
* **Start-up.** One pass over the table in a repeatable-read snapshot: aggregates for old rows,
  individual rows for the recent ones (the longest window, plus the last ``GAP_SCAN_IDS`` ids so
  gaps left by transactions in flight during the pass are known).
* **Truncate or restore.** If ``max(id)`` goes below our cursor, or the table's storage
  (``pg_relation_filenode``) changes, the table was replaced: everything is re-read from scratch
  (counters reset, which Prometheus handles). The file node catches a TRUNCATE followed by new
  rows before our next poll, when ids kept growing (no RESTART IDENTITY).
* **Outages.** The cursor and the gaps survive a lost connection; reading resumes where it stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from psycopg import sql

from exporter.collector import CollectorError, Deadline, Reason
from exporter.db import Database, classify, describe

GAP_SCAN_IDS = 100_000
GAP_SETTLE_SECONDS = 1.0
MAX_GAPS = 200_000
WARMUP_BATCH = 20_000

OPERATION_TYPES = (
    "created", "updated", "skipped", "error", "import_from_1c", "export_to_1c",
    "customer_identification", "conflict_resolution", "sync_changes", "batch_operation",
    "data_validation", "notification_failed", "identify_customer",
)  # fmt: skip
"""DATA.md §2: the declared operation types plus the legacy ``identify_customer``."""

STATUSES = ("success", "failed", "error", "warning", "skipped", "pending", "not_found")
"""DATA.md §2: the declared statuses plus the legacy ``not_found``."""

OTHER = "other"


class LabelSet:
    """Interns label values: known ones first, then up to ``cap`` unknown ones, then ``other``."""

    def __init__(self, known: Sequence[str], cap: int) -> None:
        self.values: list[str] = [*known, OTHER]
        self._index = {v: i for i, v in enumerate(self.values)}
        self._other = self._index[OTHER]
        self._cap = cap
        self._unknown = 0
        self.known_count = len(known)

    def code(self, value: str) -> int:
        i = self._index.get(value)
        if i is not None:
            return i
        if self._unknown >= self._cap:
            return self._other
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
    bucket: int | None  # histogram bucket index, None when duration_ms is NULL
    conflict_source: str | None
    email_sent: str | None
    search_method: str | None
    found: str | None
    identification_method: str | None
    rows: int
    duration_sum_ms: int
    newest_us: int


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
_TS = "(extract(epoch FROM created_at) * 1000000)::int8"
_BUCKET = "width_bucket(duration_ms, {thresholds}::int[])"

_TAIL = (
    "SELECT id, operation_type, status, " + _TS + ", duration_ms, customer_id, "
    + _BUCKET + ", " + _DETAILS + " FROM {table} WHERE id > %(cursor)s ORDER BY id LIMIT %(limit)s"
)
_GAPS = (
    "SELECT id, operation_type, status, " + _TS + ", duration_ms, customer_id, "
    + _BUCKET + ", " + _DETAILS + " FROM {table} WHERE id = ANY(%(ids)s)"
)
_INFO = (
    "SELECT (extract(epoch FROM now()) * 1000000)::int8,"
    " pg_snapshot_xmin(pg_current_snapshot())::text::int8,"
    " pg_snapshot_xmax(pg_current_snapshot())::text::int8,"
    " (SELECT max(id) FROM {table}),"
    " pg_relation_filenode({regclass}::regclass)"
)
# The start-up pass, in one repeatable-read snapshot. First every row is counted into a few
# label groups (one scan, hashed, parallel); the same scan finds the lowest id of a recent row
# (recent by time, or among the last ids), so the rows the windows need are then read through the
# primary key from there, in id (nearly time) order: one full pass plus the window, never two.
_WARMUP_GROUPS = (
    "SELECT operation_type, status, " + _BUCKET + ", " + _DETAILS + ","
    " count(*), coalesce(sum(duration_ms), 0)::int8,"
    " (extract(epoch FROM max(created_at)) * 1000000)::int8,"  # numeric math once a group
    " min(id) FILTER (WHERE created_at > %(cutoff)s OR id > %(id_floor)s)"
    " FROM {table} WHERE id <= %(hi)s GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"
)
_WARMUP_RECENT = (
    "SELECT id, operation_type, status, " + _TS + ", duration_ms, customer_id FROM {table}"
    " WHERE id >= %(lo)s AND id <= %(hi)s AND (created_at > %(cutoff)s OR id > %(id_floor)s)"
    " ORDER BY id"
)


@dataclass
class _Gap:
    detected: float  # monotonic time the id was first skipped
    horizon: int | None = None  # snapshot xmax noted after the settle period


@dataclass
class TailStats:
    rows_read: int = 0
    rebaselines: int = 0
    gaps_expired: int = 0
    gaps_dropped: int = 0


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
    monotonic: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.cursor = 0
        self.filenode: int | None = None  # the table's storage when we read it from the start
        self.gaps: dict[int, _Gap] = {}
        self.stats = TailStats()
        self.now_us: int | None = None
        self.warm = False
        self.lock = threading.RLock()  # guards the state; collectors read under it too
        self._generation = 0
        self._warmup_thread: threading.Thread | None = None
        self._warmup_error: CollectorError | None = None
        self._poll_error: CollectorError | None = None  # how the last refresh ended
        self._warmup_started = 0.0
        ident = sql.Identifier(*self.table.split("."))
        thresholds = sql.Literal([int(t) + 1 for t in self.bucket_thresholds_ms])
        regclass = sql.Literal(".".join(
            '"' + part.replace('"', '""') + '"' for part in self.table.split(".")))
        self._sql = {
            name: sql.SQL(text).format(table=ident, thresholds=thresholds, regclass=regclass)
            for name, text in (("tail", _TAIL), ("gaps", _GAPS), ("info", _INFO),
                               ("warmup_groups", _WARMUP_GROUPS),
                               ("warmup_recent", _WARMUP_RECENT))
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
                now, _xmin, _xmax, hi, filenode = conn.execute(self._sql["info"]).fetchone()  # type: ignore[misc]
                now = self._now(now)
                hi = hi or 0
                id_floor = hi - GAP_SCAN_IDS
                params = {"cutoff": _ts_param(now - self.longest_window_us),
                          "id_floor": id_floor, "hi": hi}
                with self.lock:
                    self._reset_state()
                groups = []
                lowest_recent: int | None = None
                for rec in conn.execute(self._sql["warmup_groups"], params):
                    groups.append(self._group(rec[:8], rec[8], rec[9], rec[10]))
                    if rec[11] is not None and (lowest_recent is None or rec[11] < lowest_recent):
                        lowest_recent = rec[11]
                with self.lock:
                    self._deliver(groups, [])
                    self.stats.rows_read += sum(g.rows for g in groups)
                seen: set[int] = set()  # ids among the last GAP_SCAN_IDS, to find gaps there
                if lowest_recent is not None:
                    # A server-side cursor streams the rows: memory stays flat at any size.
                    with conn.cursor(name="customer_sync_warmup") as cur:
                        cur.execute(self._sql["warmup_recent"], {**params, "lo": lowest_recent})
                        while batch := cur.fetchmany(WARMUP_BATCH):
                            recent: list[WindowRow] = []
                            for row_id, op, status, ts, dur, customer in batch:
                                if row_id > id_floor:
                                    seen.add(row_id)
                                code = pack(self.ops.code(op), self.statuses.code(status))
                                recent.append((ts, code, -1 if dur is None else dur,
                                               -1 if customer is None else customer))
                            with self.lock:
                                self._deliver([], recent)
                conn.rollback()
            with self.lock:
                self.cursor = hi
                self.filenode = filenode
                detected = self.monotonic()
                for gap_id in range(max(1, id_floor + 1), hi + 1):
                    if gap_id not in seen:
                        self.gaps[gap_id] = _Gap(detected)
                self._set_time(now)
                self.warm = True
        except CollectorError as exc:
            self._warmup_error = exc
        except Exception as exc:
            self._warmup_error = CollectorError(classify(exc), describe(exc))

    def _reset_state(self) -> None:
        self.cursor = 0
        self.gaps.clear()
        self.now_us = None
        for s in self.subscribers:
            s.reset()

    # --- polling ---------------------------------------------------------------------------

    def _poll(self, deadline: Deadline) -> None:
        with self.db.connection(deadline) as conn:
            now, xmin, xmax, max_id, filenode = conn.execute(self._sql["info"]).fetchone()  # type: ignore[misc]
            if (max_id or 0) < self.cursor or filenode != self.filenode:
                self.stats.rebaselines += 1
                self.warm = False
                raise CollectorError(
                    Reason.QUERY,
                    f"{self.table}: max(id) {max_id} is below the cursor {self.cursor} or its "
                    "storage changed; the table was truncated or restored, reading it again",
                )
            now = self._now(now)
            self._set_time(now)
            if self.gaps:
                rows = conn.execute(self._sql["gaps"], {"ids": list(self.gaps)}).fetchall()
                for rec in rows:
                    del self.gaps[rec[0]]
                self._consume(rows)
            self._expire_gaps(xmin, xmax)
            while True:
                started = self.monotonic()
                rows = conn.execute(
                    self._sql["tail"], {"cursor": self.cursor, "limit": self.batch_size}
                ).fetchall()
                if not rows:
                    break
                self._note_gaps(rows)
                self._consume(rows)
                if len(rows) < self.batch_size:
                    break
                if deadline.remaining() < 2 * (self.monotonic() - started):
                    # What was read is served; the rest is read by the next scrapes.
                    raise CollectorError(
                        Reason.TIMEOUT,
                        f"catching up on {self.table}: more new rows than one scrape can read",
                    )

    def _note_gaps(self, rows: Sequence[Any]) -> None:
        detected = self.monotonic()
        expected = self.cursor + 1
        for rec in rows:
            row_id = rec[0]
            for missing in range(expected, row_id):
                if len(self.gaps) >= MAX_GAPS:
                    self.stats.gaps_dropped += 1
                else:
                    self.gaps[missing] = _Gap(detected)
            expected = row_id + 1
        self.cursor = rows[-1][0]

    def _expire_gaps(self, xmin: int, xmax: int) -> None:
        now = self.monotonic()
        expired = []
        for gap_id, gap in self.gaps.items():
            if gap.horizon is None and now - gap.detected >= GAP_SETTLE_SECONDS:
                gap.horizon = xmax
            if gap.horizon is not None and xmin >= gap.horizon:
                expired.append(gap_id)
        for gap_id in expired:
            del self.gaps[gap_id]
        self.stats.gaps_expired += len(expired)

    def _consume(self, rows: Sequence[Any]) -> None:
        if not rows:
            return
        groups = []
        window_rows = []
        for rec in rows:
            duration = rec[4]
            group = self._group(
                (rec[1], rec[2], rec[6], *rec[7:12]), 1, duration or 0, rec[3]
            )
            groups.append(group)
            window_rows.append(self._window_row(group, duration, rec[5]))
        self._deliver(groups, window_rows)
        self.stats.rows_read += len(rows)

    def _deliver(self, groups: list[Group], rows: list[WindowRow]) -> None:
        for s in self.subscribers:
            s.on_groups(groups)
        if self.on_rows is not None and rows:
            self.on_rows(rows)

    def _group(self, key: Sequence[Any], count: int, dur_sum: int, newest: int) -> Group:
        op, status, bucket, cs, es, sm, fd, im = key
        return Group(self.ops.code(op), self.statuses.code(status), bucket, cs, es, sm, fd, im,
                     count, dur_sum, newest)

    @staticmethod
    def _window_row(group: Group, duration: int | None, customer: int | None) -> WindowRow:
        return (
            group.newest_us,
            pack(group.op, group.status),
            -1 if duration is None else duration,
            -1 if customer is None else customer,
        )

    def _now(self, db_now_us: int) -> int:
        return self.clock_us() if self.clock_us is not None else db_now_us

    def _set_time(self, now_us: int) -> None:
        self.now_us = now_us if self.now_us is None else max(self.now_us, now_us)
        if self.on_time is not None:
            self.on_time(self.now_us)


def _ts_param(us: int) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
