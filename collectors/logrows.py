"""What a sync-log row contributes: a label group for the counters and a row for the windows.

Pure: the tail and the start-up pass read records (:mod:`collectors.logsql`) and hand them
here. A row is always counted; a value without a finite meaning only stays out of what it cannot
take part in, and is counted by reason: an infinite ``created_at`` (or one past any Unix
microsecond a bigint holds) is in no window and no newest time, a negative duration is no
duration, a label value that cannot be exported is ``other``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

from collectors.labels import OTHER, LabelSet, label_value_ok
from collectors.logsql import GroupRecord, LogRecord, RecentRecord
from collectors.windows import Row, pack

OPERATION_TYPES = (
    "created", "updated", "skipped", "error", "import_from_1c", "export_to_1c",
    "customer_identification", "conflict_resolution", "sync_changes", "batch_operation",
    "data_validation", "notification_failed", "identify_customer",
)  # fmt: skip
"""DATA.md §2: the declared operation types plus the legacy ``identify_customer``."""

STATUSES = ("success", "failed", "error", "warning", "skipped", "pending", "not_found")
"""DATA.md §2: the declared statuses plus the legacy ``not_found``."""

CREATED_AT_OUT_OF_RANGE = "created_at_out_of_range"
DURATION_NEGATIVE = "duration_negative"
LABEL_VALUE_INVALID = "label_value_invalid"
UNUSABLE_REASONS = (CREATED_AT_OUT_OF_RANGE, DURATION_NEGATIVE, LABEL_VALUE_INVALID)
"""Why a row's value could not be used; the row itself is always counted."""


_N_LABELS = 8
"""A :class:`GroupRecord` starts with the label values of its rows."""
_LABELS = itemgetter(*(LogRecord._fields.index(f) for f in GroupRecord._fields[:_N_LABELS]))
"""A :class:`LogRecord`'s label values, in :class:`GroupRecord`'s order."""


class Group(NamedTuple):
    """Rows that share every label-relevant value."""

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
    """Receives the cumulative groups of everything read from the log."""

    def on_groups(self, groups: Sequence[Group]) -> None: ...

    def reset(self) -> None: ...


class RowReader:
    """Turns records into groups and window rows with the log's two label sets."""

    def __init__(self, ops: LabelSet, statuses: LabelSet) -> None:
        self.ops = ops
        self.statuses = statuses

    def tailed(self, records: Sequence[LogRecord],
               unusable: Counter[str]) -> tuple[list[Group], list[Row]]:
        """Rows read by the tail: a group for the rows that share every label value (the
        thousand rows of a busy scrape share a few dozen, so the subscribers and the label
        checks see those), and a window row for each row in time, in the order read."""
        # label values -> [label code, rows, duration sum, newest, op code, status code]
        sums: dict[tuple[Any, ...], list[Any]] = {}
        window_rows: list[Row] = []
        get, append = sums.get, window_rows.append
        negative = out_of_range = 0
        for rec in records:
            labels = _LABELS(rec)
            acc = get(labels)
            if acc is None:  # codes are given in the order values are first seen
                op, status = self.ops.code(labels[0]), self.statuses.code(labels[1])
                acc = sums[labels] = [pack(op, status), 0, 0, None, op, status]
            acc[1] += 1
            duration = rec.duration_ms
            if duration is None:
                duration = -1
            elif duration < 0:
                negative += 1
                duration = -1
            else:
                acc[2] += duration
            created = rec.created_us
            if created is None:
                out_of_range += 1
                continue
            if acc[3] is None or created > acc[3]:
                acc[3] = created
            customer = rec.customer_id
            append((created, acc[0], duration, -1 if customer is None else customer))
        if negative:
            unusable[DURATION_NEGATIVE] += negative
        if out_of_range:
            unusable[CREATED_AT_OUT_OF_RANGE] += out_of_range
        groups = [self._group(labels, op, status, rows, ms, newest, unusable)
                  for labels, (_, rows, ms, newest, op, status) in sums.items()]
        return groups, window_rows

    def grouped(self, records: Sequence[GroupRecord], unusable: Counter[str]) -> list[Group]:
        """Rows the start-up pass counted in SQL, a group at a time."""
        groups = []
        for rec in records:
            unusable[CREATED_AT_OUT_OF_RANGE] += rec.created_at_unusable
            unusable[DURATION_NEGATIVE] += rec.duration_negative
            groups.append(self._group(
                rec[:_N_LABELS], self.ops.code(rec.operation_type),
                self.statuses.code(rec.status), rec.rows, rec.duration_sum_ms, rec.newest_us,
                unusable))
        return groups

    def recent(self, records: Sequence[RecentRecord | tuple[Any, ...]]) -> list[Row]:
        """The start-up pass's rows inside the longest window (already counted as groups), as
        records or as plain tuples in the record's order: a million are read at start-up, so
        each pair of label values is coded once a batch (not once for all: raw values are
        unbounded, a memo of them would be too)."""
        codes = _Codes(self.ops, self.statuses)
        return [(created_us, codes[op, status], -1 if duration is None else duration,
                 -1 if customer is None else customer)
                for _, op, status, created_us, duration, customer in records]

    def _group(self, labels: tuple[Any, ...], op_code: int, status_code: int, rows: int,
               duration_sum_ms: int, newest_us: int | None, unusable: Counter[str]) -> Group:
        """A group from its label values, in :class:`GroupRecord`'s order, and the codes of
        its operation type and status."""
        op, status, bucket, cs, email_sent, sm, found, im = labels
        if ((op_code == self.ops.other and not label_value_ok(op))
                or (status_code == self.statuses.other and not label_value_ok(status))
                or _unusable_detail(cs) or _unusable_detail(sm) or _unusable_detail(im)):
            unusable[LABEL_VALUE_INVALID] += rows
            cs, sm, im = (OTHER if _unusable_detail(v) else v for v in (cs, sm, im))
        return Group(op_code, status_code, bucket, cs, email_sent, sm, found, im,
                     rows, duration_sum_ms, newest_us)


class _Codes(dict[tuple[str | None, str | None], int]):
    """The label code of each pair of operation type and status, made on first sight."""

    def __init__(self, ops: LabelSet, statuses: LabelSet) -> None:
        super().__init__()
        self.ops = ops
        self.statuses = statuses

    def __missing__(self, key: tuple[str | None, str | None]) -> int:
        code = self[key] = pack(self.ops.code(key[0]), self.statuses.code(key[1]))
        return code


def _unusable_detail(value: str | None) -> bool:
    """A ``details`` value that would become a label but cannot (absent or empty is fine: it
    means unknown)."""
    return bool(value) and not label_value_ok(value)
