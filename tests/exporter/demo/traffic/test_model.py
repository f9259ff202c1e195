"""The pure traffic model (``exporter/demo/traffic/model.py``): every writer's operations and
statuses appear, error bursts, one seed one stream, session status order."""

from __future__ import annotations

import random
from typing import Any

from exporter.demo.traffic import (
    CountingIds,
    LogRow,
    Mix,
    SessionUpdate,
    TrafficModel,
)
from tests.exporter.demo.traffic.conftest import Written, one, q

DECLARED_OPS = {
    "created", "updated", "skipped", "error", "import_from_1c", "export_to_1c",
    "customer_identification", "conflict_resolution", "sync_changes", "batch_operation",
    "data_validation", "notification_failed",
}
STATUSES = {  # DATA.md §2 table: statuses each writer writes
    "created": {"success", "warning"},
    "updated": {"success"},
    "skipped": {"success"},
    "error": {"failed"},
    "import_from_1c": {"success", "error"},
    "export_to_1c": {"success", "error"},
    "customer_identification": {"success", "skipped"},
    "conflict_resolution": {"success", "error"},
    "sync_changes": {"success", "error"},
    "batch_operation": {"success", "warning", "error"},
    "data_validation": {"success", "error"},
    "notification_failed": {"warning"},
    "identify_customer": {"success", "not_found"},
}


def test_every_operation_type_and_status_in_declared_sets(written: Written) -> None:
    dsn, _, _ = written
    pairs = q(dsn, "SELECT operation_type, status, count(*) FROM common_customersynclog"
                   " GROUP BY 1, 2")
    assert sum(n for _, _, n in pairs) == 3000
    ops = {op for op, _, _ in pairs}
    assert ops == DECLARED_OPS | {"identify_customer"}
    for op, status, _ in pairs:
        assert status in STATUSES[op], (op, status)
    seen = {(op, status) for op, status, _ in pairs}
    # Every status a writer can write shows up (pending is never written: DATA.md §2).
    for op, statuses in STATUSES.items():
        for status in statuses:
            if (op, status) != ("sync_changes", "error"):  # 3 % of a few dozen rows
                assert (op, status) in seen, (op, status)
    assert one(dsn, "SELECT count(*) FROM common_customersynclog WHERE status = 'pending'") == 0


def test_error_burst_turns_processor_rows_into_errors() -> None:
    mix = Mix(import_gap_seconds=0, burst_every=(50.0, 50.0), burst_length=(10.0, 10.0),
              burst_error_rate=1.0, import_share=1.0)
    model = TrafficModel(random.Random(5), CountingIds(), mix)

    def errors_at(t: float) -> tuple[int, int]:
        model.t = t
        rows = [op for op in model.take(300) if isinstance(op, LogRow)]
        buyers = [r for r in rows if r.operation_type != "skipped"]
        return sum(r.operation_type == "error" for r in buyers), len(buyers)

    quiet, n = errors_at(0.0)
    assert not model.in_burst and quiet < 0.15 * n
    burst, n = errors_at(55.0)  # the burst runs from 50 s to 60 s
    assert model.in_burst and burst == n
    after, n = errors_at(70.0)
    assert not model.in_burst and after < 0.15 * n


def test_same_seed_same_stream() -> None:
    def stream(seed: int) -> list[Any]:
        model = TrafficModel(random.Random(seed), CountingIds(), Mix(import_gap_seconds=0))
        return [
            (op.operation_type, op.status, op.correlation_id, op.details)
            if isinstance(op, LogRow) else type(op).__name__
            for op in model.take(500)
        ]

    assert stream(3) == stream(3)
    assert stream(3) != stream(4)


def test_session_updates_follow_started_in_progress_completed() -> None:
    model = TrafficModel(random.Random(2), CountingIds(), Mix(import_gap_seconds=0,
                                                              import_share=1.0))
    updates = [op for op in model.take(400) if isinstance(op, SessionUpdate)]
    by_session: dict[int, list[str]] = {}
    for u in updates:
        by_session.setdefault(u.id, []).append(u.status)
    finished = [v for v in by_session.values() if v[-1] == "completed"]
    assert finished and all(v == ["in_progress", "completed"] for v in finished)
