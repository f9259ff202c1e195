"""What a sync-log row contributes, without a database: a row is always counted, and a value
without a finite meaning stays out only of what it cannot take part in."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.business import BusinessCounters
from collectors.labels import OTHER, LabelSet, label_value_ok
from collectors.logrows import Group, RowReader
from collectors.logsql import GroupRecord, LogRecord, RecentRecord
from collectors.synclog import SyncCounters
from collectors.windows import Row, pack, unpack


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
    assert sum(g.rows for g in groups) == 6
    assert unusable == {"created_at_out_of_range": 1, "duration_negative": 1,
                        "label_value_invalid": 2}
    # Rows 1 and 2 share every label value: one group, newest from the row that has a time.
    assert len(groups) == 5 and (groups[0].rows, groups[0].newest_us) == (2, 1_000)
    assert groups[0].bucket is None and groups[0].duration_sum_ms == 0
    assert groups[1].op == rows.ops.other
    assert groups[2].conflict_source == OTHER
    assert groups[3].conflict_source == ""
    assert (groups[4].rows, groups[4].bucket, groups[4].duration_sum_ms) == (1, 0, 7)
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


def one_by_one(reader: RowReader, records: list[LogRecord],
               unusable: Counter[str]) -> tuple[list[Group], list[Row]]:
    """The tail's rows as they were once read: a group of one row each."""
    ops, statuses = reader.ops, reader.statuses
    groups, window_rows = [], []
    for rec in records:
        duration = rec.duration_ms
        if duration is not None and duration < 0:
            unusable["duration_negative"] += 1
            duration = None
        op, status = ops.code(rec.operation_type), statuses.code(rec.status)
        details = [rec.conflict_source, rec.search_method, rec.identification_method]
        unfit = [bool(v) and not label_value_ok(v) for v in details]
        if ((op == ops.other and not label_value_ok(rec.operation_type))
                or (status == statuses.other and not label_value_ok(rec.status)) or any(unfit)):
            unusable["label_value_invalid"] += 1
            details = [OTHER if bad else v for v, bad in zip(details, unfit, strict=True)]
        cs, sm, im = details
        groups.append(Group(op, status, rec.bucket, cs, rec.email_sent, sm, rec.found, im, 1,
                            duration or 0, rec.created_us))
        if rec.created_us is None:
            unusable["created_at_out_of_range"] += 1
        else:
            window_rows.append((rec.created_us, pack(op, status),
                                -1 if duration is None else duration,
                                -1 if rec.customer_id is None else rec.customer_id))
    return groups, window_rows


LABEL = st.one_of(st.none(), st.sampled_from(
    ["created", "success", "error", "conflict_resolution", "customer_identification",
     "identify_customer", "notification_failed", "", "\t", "x" * 101]), st.text(max_size=2))
DETAIL = st.one_of(st.none(), st.sampled_from(
    ["", "true", "false", "onec_id", "email", "not_found", "\x1b[0m", "y" * 101]),
    st.text(max_size=2))
LABEL_VALUES = st.tuples(LABEL, LABEL, st.none() | st.integers(0, 3), DETAIL, DETAIL, DETAIL,
                         DETAIL, DETAIL)


@st.composite
def record_batches(draw: st.DrawFn) -> list[list[LogRecord]]:
    """Batches of rows whose label values come from a few choices, so rows share them."""
    choices = draw(st.lists(LABEL_VALUES, min_size=1, max_size=5))
    rows = st.tuples(st.sampled_from(choices), st.none() | st.integers(0, 50),
                     st.none() | st.integers(-3, 30), st.none() | st.integers(1, 5))
    return [[LogRecord(0, op, status, created, duration, customer, bucket, *details)
             for (op, status, bucket, *details), created, duration, customer in batch]
            for batch in draw(st.lists(st.lists(rows, max_size=40), max_size=4))]


def state(*subscribers: object) -> list[dict[str, Any]]:
    return [{k: (v.values if isinstance(v, LabelSet) else v) for k, v in vars(s).items()
             if not isinstance(v, LabelSet) or k in ("methods", "sources")}
            for s in subscribers]


@settings(max_examples=300, deadline=None)
@given(record_batches())
def test_grouped_tail_rows_count_as_one_row_at_a_time(batches: list[list[LogRecord]]) -> None:
    """Batches read by the tail, grouped by their label values, give every number, window row,
    unusable count and label code that the same rows read one at a time give."""
    def make() -> tuple[RowReader, SyncCounters, BusinessCounters]:
        reader = RowReader(LabelSet(["created", "conflict_resolution"], 2),
                           LabelSet(["success"], 2))
        return reader, SyncCounters(3), BusinessCounters(reader.statuses, reader.ops)

    grouped, single = make(), make()
    unusable, expected_unusable = Counter[str](), Counter[str]()
    for batch in batches:
        groups, window_rows = grouped[0].tailed(batch, unusable)
        singles, expected_rows = one_by_one(single[0], batch, expected_unusable)
        assert window_rows == expected_rows
        assert sum(g.rows for g in groups) == len(batch)
        assert len(groups) == len({(r.operation_type, r.status, r.bucket, *r[7:])
                                   for r in batch})  # one group per distinct label values
        for subscribers, delivered in ((grouped[1:], groups), (single[1:], singles)):
            for s in subscribers:
                s.on_groups(delivered)
        assert state(*grouped[1:]) == state(*single[1:])
    assert unusable == expected_unusable
    assert (grouped[0].ops.values, grouped[0].statuses.values) == (
        single[0].ops.values, single[0].statuses.values)
