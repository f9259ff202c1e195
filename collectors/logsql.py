"""Every statement the sync-log tail runs, each in one place, with the row it returns.

A statement is written out whole; what several of them share (the label columns, the usable
timestamp) is a named part, written once, that the statement names in braces. Each statement
comes with a ``NamedTuple`` whose fields are its columns in order, so code reads
``record.status``, never ``rec[2]`` (a test checks the names against what PostgreSQL returns).

Times travel as Unix microseconds in a bigint, as the windows keep them (:func:`epoch_us`).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, Generic, NamedTuple, TypeVar

from psycopg import Connection, sql
from psycopg.rows import BaseRowFactory

R = TypeVar("R", bound=NamedTuple)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(expr: str) -> str:
    """SQL for a timestamptz expression as Unix microseconds in a bigint."""
    return f"(extract(epoch FROM {expr}) * 1000000)::int8"


# The Unix epoch plus 9,223,372,036,854 s: past it, Unix microseconds overflow a bigint.
USABLE_UNTIL = "294247-01-10 04:00:54+00"


def usable_ts(column: str) -> str:
    """SQL that is true when ``column`` has Unix microseconds in a bigint: an infinite
    timestamp, or one after the year 294,246, has none (its cast would fail the whole query).
    Two comparisons with constants: the start-up pass makes them on every row of the table,
    where ``isfinite`` and ``extract(epoch ...) < 9223372036854`` (a numeric) took a third of
    its counting scan."""
    return (f"({column} > '-infinity'::timestamptz"
            f" AND {column} < '{USABLE_UNTIL}'::timestamptz)")


NOW_US = epoch_us("now()")


def from_epoch_us(us: int) -> datetime:
    """Unix microseconds as a timestamptz parameter."""
    return EPOCH + timedelta(microseconds=us)


# --- rows ----------------------------------------------------------------------------------


class TableInfo(NamedTuple):
    now_us: int
    xmin: int  # every transaction below it has ended
    xmax: int  # every transaction from it on started after this snapshot
    max_id: int | None
    filenode: int | None  # the table's storage: TRUNCATE and restores replace it
    # The last id the sequence handed out (None without the privilege to see it). An id above
    # it was never taken, so it is not a rolled-back gap but a row still to come (below a row
    # inserted with an explicit, higher id).
    last_value: int | None


_INFO_COLUMNS = len(TableInfo._fields)


class LogRecord(NamedTuple):
    """One log row with what it contributes: the values that become labels, its time and its
    histogram bucket (None without a usable duration)."""

    id: int
    operation_type: str | None
    status: str | None
    created_us: int | None  # None when created_at has no Unix microseconds
    duration_ms: int | None
    customer_id: int | None
    bucket: int | None
    conflict_source: str | None
    email_sent: str | None
    search_method: str | None
    found: str | None
    identification_method: str | None


class GroupRecord(NamedTuple):
    """The rows of the start-up pass that share every label-relevant value."""

    operation_type: str | None
    status: str | None
    bucket: int | None
    conflict_source: str | None
    email_sent: str | None
    search_method: str | None
    found: str | None
    identification_method: str | None
    rows: int
    duration_sum_ms: int
    newest_us: int | None
    lowest_recent_id: int | None  # the lowest id of a row inside the longest window
    created_at_unusable: int
    duration_negative: int
    lowest_id: int


class RecentRecord(NamedTuple):
    id: int
    operation_type: str | None
    status: str | None
    created_us: int
    duration_ms: int | None  # None for a negative one too: the groups counted it already
    customer_id: int | None


class Hole(NamedTuple):
    lo: int
    hi: int


# --- parts and statements --------------------------------------------------------------------

# Shared parts, each may use the ones before it; {thresholds} and {table} are filled per tail.
_PARTS = {
    "usable": usable_ts("created_at"),
    "created_us": f"CASE WHEN {usable_ts('created_at')} THEN {epoch_us('created_at')} END",
    "duration": "CASE WHEN duration_ms >= 0 THEN duration_ms END",
    # Bounds past int4 milliseconds too: compared as int8.
    "bucket": "width_bucket({duration}, {thresholds}::int8[])",
    "details": """
        CASE WHEN operation_type = 'conflict_resolution'
             THEN details->>'conflict_source' END AS conflict_source,
        CASE WHEN operation_type = 'conflict_resolution'
             THEN details->>'email_sent' END AS email_sent,
        CASE WHEN operation_type = 'customer_identification'
             THEN details->>'search_method' END AS search_method,
        CASE WHEN operation_type = 'customer_identification'
             THEN details->>'found' END AS found,
        CASE WHEN operation_type = 'identify_customer'
             THEN details->>'identification_method' END AS identification_method""",
    "log_record": """
        id, operation_type, status, {created_us} AS created_us, duration_ms, customer_id,
        {bucket} AS bucket, {details}""",
}

_INFO = f"""
    SELECT {NOW_US} AS now_us,
           pg_snapshot_xmin(pg_current_snapshot())::text::int8 AS xmin,
           pg_snapshot_xmax(pg_current_snapshot())::text::int8 AS xmax,
           (SELECT max(id) FROM {{table}}) AS max_id,
           pg_relation_filenode({{regclass}}::regclass) AS filenode,
           (SELECT last_value FROM pg_sequences
             WHERE quote_ident(schemaname) || '.' || quote_ident(sequencename)
                 = pg_get_serial_sequence({{regclass}}, 'id')) AS last_value"""

_TAIL = """
    SELECT {log_record} FROM {table} WHERE id > %(cursor)s ORDER BY id LIMIT %(limit)s"""

# One index range scan per gap range, each limited, so a million rows that just became visible
# are read a budget at a time, lowest ids first.
_GAPS = """
    SELECT g.*
      FROM unnest(%(lo)s::int8[], %(hi)s::int8[], %(limit)s::int8[]) AS r(lo, hi, n)
     CROSS JOIN LATERAL (SELECT {log_record} FROM {table}
                          WHERE id BETWEEN r.lo AND r.hi ORDER BY id LIMIT r.n) AS g"""

# The start-up pass, in one repeatable-read snapshot. First every row is counted into a few
# label groups (one scan, hashed, parallel); the same scan finds the lowest id of a recent row,
# so the rows the windows need are then read through the primary key from there, in id (nearly
# time) order: one full pass plus the window, never two.
_WARMUP_GROUPS = f"""
    SELECT operation_type, status, {{bucket}} AS bucket, {{details}},
           count(*) AS rows,
           coalesce(sum({{duration}}), 0)::int8 AS duration_sum_ms,
           {epoch_us("max(created_at) FILTER (WHERE {usable})")} AS newest_us,
           min(id) FILTER (WHERE created_at > %(cutoff)s AND {{usable}}) AS lowest_recent_id,
           count(*) FILTER (WHERE NOT coalesce({{usable}}, false)) AS created_at_unusable,
           count(*) FILTER (WHERE duration_ms < 0) AS duration_negative,
           min(id) AS lowest_id
      FROM {{table}} WHERE id <= %(hi)s GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"""

_WARMUP_RECENT = """
    SELECT id, operation_type, status, {created_us} AS created_us, {duration} AS duration_ms,
           customer_id
      FROM {table}
     WHERE id >= %(lo)s AND id <= %(hi)s AND created_at > %(cutoff)s AND {usable}
     ORDER BY id"""

# Ids missing between visible rows: a transaction in flight may hold them. Read only when the
# row count says there are some (an index-only scan).
_WARMUP_HOLES = """
    SELECT prev + 1 AS lo, id - 1 AS hi
      FROM (SELECT id, lag(id) OVER (ORDER BY id) AS prev FROM {table} WHERE id <= %(hi)s) AS s
     WHERE id > prev + 1 ORDER BY id"""


class Rendered:
    """A composed statement as bytes, rendered once per client encoding: psycopg renders a
    ``Composed`` again on every execute (tens of microseconds for the poll)."""

    def __init__(self, text: sql.Composable) -> None:
        self.text = text
        self._bytes: dict[str, bytes] = {}

    def __call__(self, conn: Connection[Any]) -> bytes:
        encoding = conn.info.encoding
        rendered = self._bytes.get(encoding)
        if rendered is None:
            rendered = self._bytes[encoding] = self.text.as_bytes(conn)
        return rendered


def _records(cls: type[R]) -> BaseRowFactory[R]:
    """Rows as ``cls``, made from psycopg's tuples as its own ``namedtuple_row`` makes them."""
    return lambda _cursor: cls._make


@dataclass(frozen=True)
class Query(Generic[R]):
    """A statement and the record each of its rows is."""

    text: sql.Composed
    record: type[R]
    rendered: Rendered = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rendered", Rendered(self.text))

    def all(self, conn: Connection[Any], params: dict[str, Any] | None = None) -> list[R]:
        with conn.cursor(row_factory=_records(self.record)) as cur:
            return cur.execute(self.rendered(conn), params).fetchall()

    def one(self, conn: Connection[Any]) -> R:
        (row,) = self.all(conn)
        return row

    def batches(self, conn: Connection[Any], params: dict[str, Any], *, name: str,
                size: int) -> Generator[Sequence[R], None, None]:
        """The rows ``size`` at a time through a server-side cursor: memory stays flat."""
        with conn.cursor(name, row_factory=_records(self.record)) as cur:
            cur.execute(self.text, params)
            while batch := cur.fetchmany(size):
                yield batch


_new = tuple.__new__
_BY_ID = attrgetter("id")


class Polled(NamedTuple):
    """What :meth:`Statements.poll` returned: info, each rider's values, the tail rows."""

    info: TableInfo
    riders: list[tuple[Any, ...]]
    rows: list[LogRecord]

    @classmethod
    def split(cls, rows: Sequence[tuple[Any, ...]], rider_columns: Sequence[int]) -> Polled:
        log_at = _INFO_COLUMNS + sum(rider_columns)
        (head,) = [row for row in rows if row[log_at] is None]  # a tail row always has an id
        riders, at = [], _INFO_COLUMNS
        for n in rider_columns:
            riders.append(tuple(head[at:at + n]))
            at += n
        # A thousand rows a busy scrape: made as _make makes them, without its call and length
        # check per row (every row of the statement has the same columns: checked once).
        tail = [_new(LogRecord, row[log_at:]) for row in rows if row[log_at] is not None]
        if tail and len(tail[0]) != len(LogRecord._fields):
            raise TypeError(f"a tail row has {len(tail[0])} columns, not {len(LogRecord._fields)}")
        tail.sort(key=_BY_ID)  # in id order already, unless a plan changes that
        return cls(TableInfo._make(head[:_INFO_COLUMNS]), riders, tail)


@dataclass(frozen=True)
class Statements:
    """The tail's statements for one table and one set of histogram bounds."""

    info: Query[TableInfo]
    tail: Query[LogRecord]
    gaps: Query[LogRecord]
    warmup_groups: Query[GroupRecord]
    warmup_recent: Query[RecentRecord]
    warmup_holes: Query[Hole]

    def poll(self, riders: Sequence[tuple[sql.Composable, int]] = ()) -> sql.Composed:
        """``info``, one row of each rider and the first batch of ``tail``, as one statement
        (one round trip, one snapshot). Each rider is a one-row SELECT and how many columns
        it has. The first row holds info and the riders' columns, its log fields NULL; every
        other row is a tail row whose other fields are NULL (so the riders' values, however
        large, travel once)."""
        others = _INFO_COLUMNS + sum(n for _, n in riders)
        head = sql.SQL(", ").join([
            sql.SQL("i.*"),
            *(sql.SQL("r{}.*").format(sql.SQL(str(k))) for k in range(len(riders))),
            *(sql.SQL("NULL AS {}").format(sql.Identifier(f)) for f in LogRecord._fields),
        ])
        joins = sql.SQL("").join(
            sql.SQL(" CROSS JOIN ({}) AS r{}").format(part, sql.SQL(str(k)))
            for k, (part, _) in enumerate(riders))
        return sql.SQL(
            "SELECT {head} FROM ({info}) AS i{joins}"
            " UNION ALL SELECT {nulls}t.* FROM ({tail}) AS t"
        ).format(head=head, info=self.info.text, joins=joins, tail=self.tail.text,
                 nulls=sql.SQL("NULL, " * others))

    @classmethod
    def build(cls, table: str, bucket_thresholds_ms: Sequence[int]) -> Statements:
        """``table`` may be schema-qualified; a row of duration ``d`` ms is in the first bucket
        whose threshold is ``>= d``."""
        parts: dict[str, sql.Composable] = {
            "table": sql.Identifier(*table.split(".")),
            "thresholds": sql.Literal([int(t) + 1 for t in bucket_thresholds_ms]),
            "regclass": sql.Literal(
                ".".join('"' + part.replace('"', '""') + '"' for part in table.split("."))),
        }
        for name, text in _PARTS.items():
            parts[name] = sql.SQL(text).format(**parts)

        def query(text: str, record: type[R]) -> Query[R]:
            return Query(sql.SQL(text).format(**parts), record)

        return cls(
            info=query(_INFO, TableInfo),
            tail=query(_TAIL, LogRecord),
            gaps=query(_GAPS, LogRecord),
            warmup_groups=query(_WARMUP_GROUPS, GroupRecord),
            warmup_recent=query(_WARMUP_RECENT, RecentRecord),
            warmup_holes=query(_WARMUP_HOLES, Hole),
        )
