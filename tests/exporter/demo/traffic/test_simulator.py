"""The live simulator (``exporter/demo/traffic/simulator.py``): outages and their callbacks, the
thread's rate, a restart on the same database."""

from __future__ import annotations

import random
import threading
import time

from exporter.demo.traffic import (
    NO_OUTAGES,
    Mix,
    OutageSchedule,
    TrafficSimulator,
)
from tests.exporter.demo.traffic.conftest import one, q


def test_outage_fails_imports_and_calls_back(db_dsn: str) -> None:
    clock = [0.0]
    events: list[bool] = []
    sim = TrafficSimulator(
        db_dsn, random.Random(11), mix=Mix(import_gap_seconds=0),
        schedule=OutageSchedule(first=10, every=30, duration=5), clock=lambda: clock[0],
    )
    sim.on_outage.append(events.append)
    try:
        sim.step(200)
        assert events == [] and not sim.outage
        last_before = one(db_dsn, "SELECT coalesce(max(id), 0) FROM import_sessions")
        log_before = one(db_dsn, "SELECT max(id) FROM common_customersynclog")
        clock[0] = 11.0
        sim.step(400)
        assert events == [True] and sim.outage
        clock[0] = 16.0
        sim.step(50)
        assert events == [True, False]
        clock[0] = 41.0  # the next outage of the schedule
        sim.step(1)
        assert events == [True, False, True]
        sim.force_outage(False)
        assert events == [True, False, True, False]
    finally:
        sim.stop()
    # Sessions that started during the outage failed, with error rows carrying the 1C error.
    during = q(db_dsn, "SELECT id, status, error_message FROM import_sessions WHERE id > %s"
                       " AND finished_at IS NOT NULL ORDER BY id", (last_before,))
    failed = [r for r in during if r[1] == "failed"]
    assert failed and all("1c.freesport.local" in r[2] for r in failed)
    for sid, _, message in failed:
        assert one(db_dsn, "SELECT count(*) FROM common_customersynclog WHERE session = %s"
                           " AND operation_type = 'error' AND status = 'failed'"
                           " AND error_message = %s", (str(sid), message)) >= 1
    imports = q(db_dsn, "SELECT status FROM common_customersynclog WHERE id > %s AND id <= %s"
                        " AND operation_type IN ('import_from_1c', 'export_to_1c')",
                (log_before, log_before + 400))
    assert imports and all(s == "error" for (s,) in imports)


def test_thread_writes_at_the_rate_and_stops(db_dsn: str) -> None:
    sim = TrafficSimulator(db_dsn, random.Random(1), rate=200.0, tick=0.05,
                           schedule=NO_OUTAGES)
    batches: list[int] = []
    sim.on_batch.append(lambda ops: batches.append(len(ops)))
    sim.start()
    start = time.monotonic()
    time.sleep(1.5)
    sim.stop()
    elapsed = time.monotonic() - start
    n = one(db_dsn, "SELECT count(*) FROM common_customersynclog")
    assert 0.6 * 200 * elapsed <= n <= 1.1 * 200 * elapsed
    assert n == sim.totals.log_rows and len(batches) > 10
    assert not any(t.name == "demo-traffic" for t in threading.enumerate())


def test_restart_on_the_same_database_continues(db_dsn: str) -> None:
    first = TrafficSimulator(db_dsn, random.Random(9), schedule=NO_OUTAGES,
                             mix=Mix(import_gap_seconds=0))
    first.step(450)  # stops in the middle of an import run
    first.stop()
    open_before = one(db_dsn, "SELECT count(*) FROM import_sessions WHERE finished_at IS NULL")
    assert open_before >= 1
    second = TrafficSimulator(db_dsn, random.Random(9), schedule=NO_OUTAGES,
                              mix=Mix(import_gap_seconds=0))  # same seed: no unique clash
    second.load_state()
    assert one(db_dsn, "SELECT count(*) FROM import_sessions WHERE finished_at IS NULL") == 0
    assert len(second.model.customers_1c) == one(
        db_dsn, "SELECT count(*) FROM users WHERE created_in_1c"
    )
    second.step(1500)
    second.stop()
    # Known 1C counterparties are updated, not created twice.
    assert one(db_dsn, "SELECT count(*) FROM (SELECT onec_id FROM common_customersynclog"
                       " WHERE operation_type = 'created' AND status = 'success'"
                       " GROUP BY 1 HAVING count(*) > 1) d") == 0
    assert one(db_dsn, "SELECT count(*) FROM common_customersynclog") == 1950
