"""The tail's statements on every PostgreSQL major: their columns are the records' fields, and
the per-scrape ones read by primary key.

The log has no index on ``created_at`` (DATA.md), so what keeps a scrape at O(new rows) is the
planner reading new rows, pending gaps and ``max(id)`` by primary key. A planner that chose a
sequential scan would still give right numbers, so only the plan shows it; it is checked on each
major, as the exporter's role, on a table big enough for a sequential scan to be a real option.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import psycopg
import pytest
from psycopg import sql

from collectors.logsql import EPOCH, USABLE_UNTIL, Polled, Statements, from_epoch_us, usable_ts

pytestmark = pytest.mark.every_pg_major

TABLE = "common_customersynclog"
ROWS = 50_000
STATEMENTS = Statements.build(TABLE, [100, 1000])
PARAMS: dict[str, dict[str, Any]] = {
    "info": {},  # max(id)
    "tail": {"cursor": ROWS - 100, "limit": 50_000},  # the rows since the last scrape
    "gaps": {"lo": [5, ROWS // 2, ROWS - 10], "hi": [5, ROWS // 2 + 3, ROWS - 1],
             "limit": [1, 4, 10]},  # pending id ranges, each read a budget at a time
    "warmup_groups": {"cutoff": EPOCH, "hi": ROWS},
    "warmup_recent": {"lo": 1, "hi": ROWS, "cutoff": EPOCH},
    "warmup_holes": {"hi": ROWS},
}


def test_times_are_unix_microseconds() -> None:
    assert from_epoch_us(1_795_000_000_123_456).isoformat() == "2026-11-18T11:06:40.123456+00:00"


def test_every_statement_returns_its_records_fields(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        f"INSERT INTO {TABLE} (onec_id, operation_type, status, error_message, details,"
        " created_at, session, correlation_id, customer_id, duration_ms, updated_at, user_agent)"
        " VALUES ('', 'conflict_resolution', 'success', '', '{\"conflict_source\": \"x\"}',"
        " now(), '', gen_random_uuid(), NULL, 7, now(), '')")
    assert list(PARAMS) == [f.name for f in fields(Statements)]
    for name, params in PARAMS.items():
        query = getattr(STATEMENTS, name)
        with conn.cursor() as cur:
            cur.execute(query.text, params)
            assert cur.description is not None
            assert [c.name for c in cur.description] == list(query.record._fields), name
    (record,) = STATEMENTS.tail.all(conn, {"cursor": 0, "limit": 10})
    assert (record.operation_type, record.conflict_source, record.duration_ms,
            record.bucket) == ("conflict_resolution", "x", 7, 0)


def test_the_poll_is_info_the_riders_and_the_tail_in_one_statement(
    conn: psycopg.Connection[Any],
) -> None:
    """What one poll returns equals what info and tail return apart, and each rider's row."""
    conn.execute(
        f"INSERT INTO {TABLE} (onec_id, operation_type, status, error_message, details,"
        " created_at, session, correlation_id, customer_id, duration_ms, updated_at, user_agent)"
        " SELECT '', 'created', 'success', '', '{}', now(), '', gen_random_uuid(), NULL, g, now(),"
        " ''"
        " FROM generate_series(1, 30) g")
    riders = [(sql.SQL("SELECT %(a)s::int AS a, 'x' AS b"), 2),
              (sql.SQL("SELECT json_build_array(1, 2.5) AS c"), 1)]
    params = {"cursor": 10, "limit": 15, "a": 7}
    rows = conn.execute(STATEMENTS.poll(riders), params).fetchall()
    polled = Polled.split(rows, [n for _, n in riders])
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")  # the same rows, apart
    try:
        info = STATEMENTS.info.one(conn)
        tail = STATEMENTS.tail.all(conn, params)
    finally:
        conn.execute("COMMIT")
    assert polled.info._replace(now_us=0, xmin=0, xmax=0) == info._replace(now_us=0, xmin=0,
                                                                           xmax=0)
    assert polled.rows == tail and [r.id for r in tail] == list(range(11, 26))
    assert polled.riders == [(7, "x"), ([1, 2.5],)]
    empty = Polled.split(conn.execute(STATEMENTS.poll(), {**params, "cursor": 30}).fetchall(), [])
    assert empty.rows == [] and empty.riders == [] and empty.info.max_id == 30


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def test_new_rows_gaps_and_max_id_are_read_by_primary_key(
    conn: psycopg.Connection[Any], exporter_dsn: str
) -> None:
    conn.execute(
        f"INSERT INTO {TABLE} (onec_id, operation_type, status, error_message, details,"
        " created_at, session, correlation_id, customer_id, duration_ms, updated_at, user_agent)"
        " SELECT '', 'created', 'success', '', '{}', now() - g * interval '1 second', '',"
        " gen_random_uuid(), NULL, g %% 1000, now(), '' FROM generate_series(1, %s) g", (ROWS,))
    conn.execute(f"ANALYZE {TABLE}")
    (pkey,) = conn.execute(
        "SELECT conindid::regclass::text FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = 'p'", (TABLE,)).fetchone() or (None,)
    with psycopg.connect(exporter_dsn) as exporter:
        for name in ("tail", "gaps", "info", "poll"):
            text = STATEMENTS.poll() if name == "poll" else getattr(STATEMENTS, name).text
            query = sql.SQL("EXPLAIN (FORMAT JSON) ") + text
            ((plan,),) = exporter.execute(query, PARAMS.get(name, PARAMS["tail"])).fetchall()
            on_log = [n for n in plan_nodes(plan[0]["Plan"]) if n.get("Relation Name") == TABLE]
            assert on_log, (name, plan)
            for node in on_log:
                assert node["Node Type"] in ("Index Scan", "Index Only Scan"), (name, node)
                assert node["Index Name"] == pkey, (name, node)


def test_usable_is_exactly_a_bigint_of_unix_microseconds(conn: psycopg.Connection[Any]) -> None:
    """The two comparisons say what ``isfinite`` and ``extract(epoch ...)`` say, at the bound
    a microsecond either side, at both infinities and at the ends of timestamptz's range."""
    values = ["-infinity", "infinity", "4714-11-24 00:00:00+00 BC", "1970-01-01 00:00:00+00",
              "294276-12-31 23:59:59.999999+00", USABLE_UNTIL]
    conn.execute("SET TIME ZONE 'Asia/Kamchatka'")  # the literals carry their own zone
    rows = conn.execute(
        sql.SQL("SELECT t::text, {usable}, isfinite(t) AND extract(epoch FROM t) < 9223372036854"
                " FROM (SELECT unnest(%s::timestamptz[]) UNION ALL"
                "       SELECT %s::timestamptz + d * interval '1 microsecond'"
                "         FROM unnest(ARRAY[-1, 1]) AS d) AS v(t)")
        .format(usable=sql.SQL(usable_ts("t"))), (values, USABLE_UNTIL)).fetchall()
    assert len(rows) == 8 and sum(1 for _, fits, _ in rows if fits) == 3
    assert [(ts, fits) for ts, fits, _ in rows] == [(ts, want) for ts, _, want in rows]
