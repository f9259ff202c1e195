"""The sync-log tail: its pure parts without a database (label values, what a row contributes,
where the tail stops at the gap limit), and its per-scrape plans on every PostgreSQL major.

The log has no index on ``created_at`` (DATA.md), so what keeps a scrape at O(new rows) is the
planner reading new rows, pending gaps and ``max(id)`` by primary key. A planner that chose a
sequential scan would still give right numbers, so only the plan shows it; it is checked on each
major, as the exporter's role, on a table big enough for a sequential scan to be a real option.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql
from pydantic import SecretStr

from collectors.logtail import (
    OPERATION_TYPES,
    OTHER,
    STATUSES,
    Group,
    LabelSet,
    LogTail,
    label_value_ok,
    unpack,
)
from exporter.config import DatabaseConfig
from exporter.db import Database

pytestmark = pytest.mark.every_pg_major


@pytest.mark.parametrize(("value", "ok"), [
    ("created", True), ("кириллица", True), ('quote"back\\slash', True), ("a b", True),
    ("x" * 100, True), ("x" * 101, False), ("", False), (None, False), ("\x01", False),
    ("tab\there", False), ("line\nbreak", False), ("\x1b[31m", False), ("zero\u200bwidth", False),
    ("no\u00a0break", False), ("\u2028", False), (42, False),
])
def test_label_value_ok(value: object, ok: bool) -> None:
    assert label_value_ok(value) is ok


def printable(value: str) -> bool:
    return all(unicodedata.category(c)[0] not in "CZ" or c == " " for c in value)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=120), st.sampled_from(["created", ""])),
                max_size=40), st.integers(1, 5))
def test_label_set_gives_each_exportable_value_a_place_up_to_the_cap(values: list[str | None],
                                                                     cap: int) -> None:
    labels = LabelSet(["created"], cap)
    placed: dict[str, int] = {}
    for v in values:
        code = labels.code(v)
        assert code == labels.code(v)  # stable
        exportable = v is not None and 1 <= len(v) <= 100 and printable(v)
        if exportable and (v in placed or v in ("created", OTHER) or len(placed) < cap):
            assert labels.values[code] == v
            if v not in ("created", OTHER):
                placed[v] = code
        else:
            assert code == labels.other
    assert len(labels.values) == 2 + len(placed) <= 2 + cap


class Recorder:
    def __init__(self) -> None:
        self.groups: list[Group] = []

    def on_groups(self, groups: Sequence[Group]) -> None:
        self.groups += groups

    def reset(self) -> None:
        self.groups = []


def tail(max_gap_ranges: int = 100) -> tuple[LogTail, Recorder, list[Any]]:
    recorder, window_rows = Recorder(), []
    t = LogTail(db=None, table="common_customersynclog",  # type: ignore[arg-type]
                bucket_thresholds_ms=[5, 100], ops=LabelSet(["created"], 5),
                statuses=LabelSet(["success"], 5), longest_window_us=10**9,
                on_rows=window_rows.extend, subscribers=[recorder],
                max_gap_ranges=max_gap_ranges, monotonic=lambda: 0.0)
    return t, recorder, window_rows


def row(row_id: int, op: str | None = "created", status: str | None = "success",
        ts: int | None = 1_000, duration: int | None = None, source: str | None = None) -> tuple:
    # id, op, status, created_at µs, duration_ms, customer_id, bucket, 5 details values
    bucket = None if duration is None or duration < 0 else 0
    return (row_id, op, status, ts, duration, None, bucket, source, None, None, None, None)


def test_a_row_counts_wherever_its_values_allow() -> None:
    t, recorder, window_rows = tail()
    t._consume([
        row(1, ts=None),  # created_at out of range: counted, in no window
        row(2, duration=-5),  # negative duration: counted, no duration
        row(3, op="\x1b[31m"),  # not exportable: counted as other
        row(4, op="conflict_resolution", source="x" * 300),
        row(5, op="conflict_resolution", source=""),  # empty means absent: fine
        row(6, duration=7),
    ])
    assert len(recorder.groups) == 6 and t.stats.rows_read == 6
    assert t.stats.unusable == {"created_at_out_of_range": 1, "duration_negative": 1,
                                "label_value_invalid": 2}
    assert [g.newest_us for g in recorder.groups][:2] == [None, 1_000]
    assert recorder.groups[1].bucket is None and recorder.groups[1].duration_sum_ms == 0
    assert recorder.groups[2].op == t.ops.other
    assert recorder.groups[3].conflict_source == OTHER
    assert recorder.groups[4].conflict_source == ""
    assert len(window_rows) == 5  # all but the row without a time
    assert [w[2] for w in window_rows] == [-1, -1, -1, -1, 7]  # -1: no duration
    assert {t.ops.values[unpack(w[1])[0]] for w in window_rows} == {
        "created", "other", "conflict_resolution"}


def test_tail_stops_before_the_row_whose_gap_does_not_fit() -> None:
    t, _, _ = tail(max_gap_ranges=2)
    rows = [row(2), row(3), row(5), row(8), row(9), row(12)]  # gaps 1, 4, 6-7, 10-11
    assert t._note_gaps(rows) == 3  # rows 2, 3 and 5; row 8 would need a third range
    assert t.cursor == 5 and list(t.gaps) == [(1, 1), (4, 4)]
    t.gaps.discard([1])  # id 1 showed up: room for one more range
    assert t._note_gaps(rows[3:]) == 2  # rows 8 and 9; row 12 waits
    assert t.cursor == 9 and list(t.gaps) == [(4, 4), (6, 7)]


# --- plans on every major ---------------------------------------------------------------------


TABLE = "common_customersynclog"
ROWS = 50_000


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
    db = Database(DatabaseConfig(dsn=SecretStr(exporter_dsn)))
    tail = LogTail(db=db, table=TABLE, bucket_thresholds_ms=[100, 1000],
                   ops=LabelSet(OPERATION_TYPES, 5), statuses=LabelSet(STATUSES, 5),
                   longest_window_us=86_400_000_000)
    queries = {
        "tail": {"cursor": ROWS - 100, "limit": 50_000},  # the rows since the last scrape
        "gaps": {"lo": [5, ROWS // 2, ROWS - 10], "hi": [5, ROWS // 2 + 3, ROWS - 1],
                 "limit": [1, 4, 10]},  # pending id ranges, each read a budget at a time
        "info": {},  # max(id)
    }
    with psycopg.connect(exporter_dsn) as exporter:
        for name, params in queries.items():
            query = sql.SQL("EXPLAIN (FORMAT JSON) ") + tail._sql[name]
            ((plan,),) = exporter.execute(query, params).fetchall()
            on_log = [n for n in plan_nodes(plan[0]["Plan"]) if n.get("Relation Name") == TABLE]
            assert on_log, (name, plan)
            for node in on_log:
                assert node["Node Type"] in ("Index Scan", "Index Only Scan"), (name, node)
                assert node["Index Name"] == pkey, (name, node)
