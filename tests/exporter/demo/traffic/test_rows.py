"""Row operations render their own COPY values (``exporter/demo/traffic/rows.py``); pure, no
database: every value lines up with a named column and the row time replaces every ``STAMP``."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.demo.traffic import (
    STAMP,
    ConflictRow,
    LogRow,
    SessionRow,
    SessionUpdate,
    UserRow,
    UserUpdate,
)

TS = datetime(2026, 3, 1, 12, tzinfo=UTC)
DETAILS = st.dictionaries(
    st.text("abcdef_", min_size=1, max_size=8),
    st.one_of(st.just(STAMP), st.integers(-5, 5), st.text(max_size=5), st.none()),
    max_size=6,
)


@settings(deadline=None)  # the first example pays for imports; the CI machine is shared
@given(DETAILS, st.none() | st.integers(0, 10_000))
def test_a_log_row_renders_one_value_per_column_with_stamps_filled(
    details: dict[str, Any], duration: int | None
) -> None:
    row = LogRow("import_from_1c", "success", uuid.uuid4(), onec_id="x", details=details,
                 customer_id=7, duration_ms=duration)
    values = dict(zip(LogRow.COLUMNS, row.copy_values(TS), strict=True))
    assert values["created_at"] == values["updated_at"] == TS
    assert values["duration_ms"] == duration and values["customer_id"] == 7
    assert json.loads(values["details"]) == {
        k: TS.isoformat() if v is STAMP else v for k, v in details.items()
    }
    assert STAMP not in values.values()


@settings(deadline=None)
@given(DETAILS, st.booleans())
def test_a_conflict_row_renders_one_value_per_column(
    details: dict[str, Any], resolved: bool
) -> None:
    row = ConflictRow("customer_data", 3, details, is_resolved=resolved)
    values = dict(zip(ConflictRow.COLUMNS, row.copy_values(TS), strict=True))
    assert values["resolved_at"] == (TS if resolved else None)
    assert values["created_at"] == values["updated_at"] == TS
    assert STAMP.__repr__() not in values["details"]


def test_user_and_session_records_are_keyed_by_their_columns() -> None:
    user = UserRow(5, None, "unregistered", True, synced=True).record(TS)
    assert tuple(user) == UserRow.COLUMNS and user["last_sync_at"] == TS
    session = SessionRow(9).record(TS)
    assert tuple(session) == SessionRow.COLUMNS and session["finished_at"] is None


def test_an_update_folds_into_the_named_columns_and_refuses_unknown_ones() -> None:
    later = TS + timedelta(seconds=5)
    user = UserRow(5, None, "unregistered", True).record(TS)
    UserUpdate(5, {"role": "trainer", "last_sync_at": STAMP}).fold_into(user, later)
    assert (user["role"], user["last_sync_at"], user["updated_at"]) == ("trainer", later, later)
    assert tuple(user) == UserRow.COLUMNS
    with pytest.raises(KeyError, match="no_such_column"):
        UserUpdate(5, {"no_such_column": 1}).fold_into(user, later)
    session = SessionRow(9).record(TS)
    SessionUpdate(9, "failed", finished=True, error_message="1C is down").fold_into(session, later)
    assert (session["status"], session["finished_at"], session["error_message"]) == (
        "failed", later, "1C is down")
    assert session["report_details"] == "{}" and tuple(session) == SessionRow.COLUMNS
