"""The sync-log tail without a database: what it delivers and counts, and where it stops at
the gap limit. The tail against PostgreSQL is checked through the synclog collector
(tests/collectors/test_synclog.py), every number against SQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from collectors.labels import LabelSet
from collectors.logrows import Group
from collectors.logsql import LogRecord
from collectors.logtail import LogTail


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


def row(row_id: int, ts: int | None = 1_000, duration: int | None = None) -> LogRecord:
    return LogRecord(row_id, "created", "success", ts, duration, None, None, None, None, None,
                     None, None)


def test_what_is_read_is_delivered_and_counted() -> None:
    t, recorder, window_rows = tail()
    t._consume([row(1, ts=None), row(2, duration=-5), row(3, duration=7)])
    # One label group of three rows: two have a duration of none (one negative), one of 7 ms.
    assert [(g.rows, g.duration_sum_ms, g.newest_us) for g in recorder.groups] == [(3, 7, 1_000)]
    assert t.stats.rows_read == 3
    assert t.stats.unusable == {"created_at_out_of_range": 1, "duration_negative": 1}
    assert [w[2] for w in window_rows] == [-1, 7]  # the row without a time is in no window
    t.restart()
    assert recorder.groups == [] and t.cursor == 0 and t.stats.rows_read == 3


def test_tail_stops_before_the_row_whose_gap_does_not_fit() -> None:
    t, _, _ = tail(max_gap_ranges=2)
    rows = [row(2), row(3), row(5), row(8), row(9), row(12)]  # gaps 1, 4, 6-7, 10-11
    assert t._note_gaps(rows) == 3  # rows 2, 3 and 5; row 8 would need a third range
    assert t.cursor == 5 and list(t.gaps) == [(1, 1), (4, 4)]
    t.gaps.discard([1])  # id 1 showed up: room for one more range
    assert t._note_gaps(rows[3:]) == 2  # rows 8 and 9; row 12 waits
    assert t.cursor == 9 and list(t.gaps) == [(4, 4), (6, 7)]
