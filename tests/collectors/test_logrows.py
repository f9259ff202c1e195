"""What a sync-log row contributes, without a database: a row is always counted, and a value
without a finite meaning stays out only of what it cannot take part in."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from collectors.labels import OTHER, LabelSet
from collectors.logrows import RowReader
from collectors.logsql import GroupRecord, LogRecord, RecentRecord
from collectors.windows import pack, unpack


def reader() -> RowReader:
    return RowReader(LabelSet(["created"], 5), LabelSet(["success"], 5))


def row(row_id: int, op: str | None = "created", status: str | None = "success",
        ts: int | None = 1_000, duration: int | None = None,
        source: str | None = None) -> LogRecord:
    bucket = None if duration is None or duration < 0 else 0
    return LogRecord(row_id, op, status, ts, duration, None, bucket, source, None, None, None,
                     None)


def test_a_row_counts_wherever_its_values_allow() -> None:
    rows, unusable = reader(), Counter[str]()
    groups, window_rows = rows.tailed([
        row(1, ts=None),  # created_at out of range: counted, in no window
        row(2, duration=-5),  # negative duration: counted, no duration
        row(3, op="\x1b[31m"),  # not exportable: counted as other
        row(4, op="conflict_resolution", source="x" * 300),
        row(5, op="conflict_resolution", source=""),  # empty means absent: fine
        row(6, duration=7),
    ], unusable)
    assert len(groups) == 6 and sum(g.rows for g in groups) == 6
    assert unusable == {"created_at_out_of_range": 1, "duration_negative": 1,
                        "label_value_invalid": 2}
    assert [g.newest_us for g in groups][:2] == [None, 1_000]
    assert groups[1].bucket is None and groups[1].duration_sum_ms == 0
    assert groups[2].op == rows.ops.other
    assert groups[3].conflict_source == OTHER
    assert groups[4].conflict_source == ""
    assert len(window_rows) == 5  # all but the row without a time
    assert [w[2] for w in window_rows] == [-1, -1, -1, -1, 7]  # -1: no duration
    assert {rows.ops.values[unpack(w[1])[0]] for w in window_rows} == {
        "created", "other", "conflict_resolution"}


def test_start_up_groups_count_their_unusable_rows_once() -> None:
    rows, unusable = reader(), Counter[str]()
    groups = rows.grouped([
        GroupRecord("created", "success", 1, None, None, None, None, None, rows=10,
                    duration_sum_ms=50, newest_us=9, lowest_recent_id=3, created_at_unusable=2,
                    duration_negative=1, lowest_id=1),
        GroupRecord("\t", "success", None, None, None, None, None, None, rows=4,
                    duration_sum_ms=0, newest_us=None, lowest_recent_id=None,
                    created_at_unusable=0, duration_negative=0, lowest_id=11),
    ], unusable)
    assert [(g.op, g.rows, g.duration_sum_ms, g.newest_us) for g in groups] == [
        (0, 10, 50, 9), (rows.ops.other, 4, 0, None)]
    assert unusable == {"created_at_out_of_range": 2, "duration_negative": 1,
                        "label_value_invalid": 4}


def test_recent_rows_become_window_rows() -> None:
    rows = reader()
    window_rows = rows.recent([RecentRecord(7, "created", "warning", 123, None, 42),
                               RecentRecord(8, "updated", "success", 124, 5, None)])
    assert [(ts, rows.ops.values[unpack(code)[0]], rows.statuses.values[unpack(code)[1]], d, c)
            for ts, code, d, c in window_rows] == [
        (123, "created", "warning", -1, 42), (124, "updated", "success", 5, -1)]


VALUES = st.one_of(st.none(), st.sampled_from(["created", "success", "x", "y", "z", "", "\t"]),
                   st.text(max_size=3))


@given(st.lists(st.tuples(VALUES, VALUES, st.integers(0, 10**6),
                          st.none() | st.integers(0, 10**4), st.none() | st.integers(1, 50)),
                max_size=40))
def test_window_rows_are_coded_as_one_row_at_a_time_would_be(rows: list[Any]) -> None:
    """Plain tuples, coded a pair of values at a time, give what each row coded by itself
    through the label sets gives: the same codes, in the same first-seen order, up to the cap
    of two unknown values each."""
    fast = RowReader(LabelSet(["created"], 2), LabelSet(["success"], 2))
    ops, statuses = LabelSet(["created"], 2), LabelSet(["success"], 2)
    tuples = [(i, op, status, ts, d, c) for i, (op, status, ts, d, c) in enumerate(rows)]
    assert fast.recent(tuples) == [
        (ts, pack(ops.code(op), statuses.code(status)), -1 if d is None else d,
         -1 if c is None else c) for _, op, status, ts, d, c in tuples]
    assert (fast.ops.values, fast.statuses.values) == (ops.values, statuses.values)
